# Skiff: the two commands of the README, and the steps they are made of.
#   make run    a local broker you can produce to and consume from
#   make test   everything CI runs (installs what it needs first)

SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/skiff
CARGO ?= cargo
BROKER_PORT ?= 9092
ADMIN_PORT ?= 9644
CONTROLLER_PORT ?= 9093

.PHONY: test lint crds deps kcat run bench-storage

## test: lint, then every test: unit, property, protocol conformance, real clients,
## crash recovery, and the e2e harness on a real Kubernetes control plane
test: deps lint
	SKIFF_E2E_REQUIRE=1 $(CARGO) test --workspace --locked

## lint: formatting, clippy with warnings as errors, crds/ (and the chart's copy) as the
## operator's types generate them, and the Helm chart (helm lint/template, RBAC vs the code)
lint: crds
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	git diff --exit-code crds/ charts/skiff-operator/crds/
	charts/lint.sh

## crds: regenerate crds/*.yaml from the operator's Rust types, and the Helm chart's copy
crds:
	$(CARGO) run --locked -q -p skiff-operator --bin crdgen -- crds
	cp crds/*.yaml charts/skiff-operator/crds/

## deps: the real Kafka clients the tests drive (kcat, confluent-kafka, kafka-python, Java
## client) and the Kubernetes control plane and helm built from source (cached in $(CACHE))
deps:
	broker/tests/clients/install.sh
	e2e/controlplane/build.sh

## kcat: the command-line client the README uses (Debian package)
kcat:
	@command -v kcat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; }

## run: one local broker on 127.0.0.1:$(BROKER_PORT), data in ./skiff-data
run: kcat
	$(CARGO) build --release --locked -p skiff-broker
	@echo
	@echo "Skiff is starting on 127.0.0.1:$(BROKER_PORT) (admin: http://127.0.0.1:$(ADMIN_PORT)/metrics). In another terminal:"
	@echo "  echo hello | kcat -b 127.0.0.1:$(BROKER_PORT) -P -t demo      # produce"
	@echo "  kcat -b 127.0.0.1:$(BROKER_PORT) -C -t demo -e                # consume"
	@echo "Stop with Ctrl-C (clean shutdown)."
	@echo
	exec target/release/skiff-broker --data-dir ./skiff-data --listen 127.0.0.1:$(BROKER_PORT) --admin-listen 127.0.0.1:$(ADMIN_PORT) --controller-listen 127.0.0.1:$(CONTROLLER_PORT)

## bench-storage: storage-engine figures next to dd, written to BENCHMARKS.md
bench-storage:
	python3 broker/benches/storage_report.py

.PHONY: bench bench-quick bench-kafka4

## bench: Skiff and Apache Kafka side by side on this machine (median of 3 runs, min–max),
## with the machine's physical limits; tables and plots go to BENCHMARKS.md and e2e/bench/plots.
## About 45 minutes on 2 cores (46 min measured); run it on a quiet machine
bench:
	$(CARGO) build --release --locked -p skiff-broker
	"$$(e2e/bench/install.sh)" e2e/bench/bench.py --runs 3

## bench-quick: the issue's scenarios (1 node: 1; 3 brokers: 2-7) with small loads, one run each
## (9 minutes measured on a quiet 2-core machine, 12 on a busy one, most of it Kafka's JVM
## starts and restarts; noisy)
bench-quick:
	$(CARGO) build --release --locked -p skiff-broker
	"$$(e2e/bench/install.sh)" e2e/bench/bench.py --quick

## bench-kafka4: the full run against Apache Kafka 4.x (KAFKA4_VERSION) and its own tools,
## into its own BENCHMARKS.md section and e2e/bench/plots/kafka-VERSION; about 45 minutes
KAFKA4_VERSION ?= 4.1.1
bench-kafka4:
	$(CARGO) build --release --locked -p skiff-broker
	e2e/tools/kafka.sh fetch $(KAFKA4_VERSION) > /dev/null
	KAFKA_VERSION=$(KAFKA4_VERSION) "$$(e2e/bench/install.sh)" e2e/bench/bench.py --runs 3 \
	  --plots e2e/bench/plots/kafka-$(KAFKA4_VERSION)

.PHONY: up down

## up: a local Kubernetes control plane (built from source once, cached) with the operator
## installed from charts/skiff-operator (namespace skiff-system) and the example Cluster of 3
## brokers and Topic (namespace skiff), left running in the background; prints the kubectl
## and kcat commands to use it. Leaves a real cluster (KUBECONFIG) alone and prints the helm
## command for it. Needs root (brokers' DNS names in /etc/hosts, the operator pods'
## service-account mount); see e2e/README.md
up:
	$(CARGO) run --locked -q -p skiff-e2e -- local-cluster

## down: stop everything `make up` started (state stays in e2e/.state until the next up)
down:
	$(CARGO) run --locked -q -p skiff-e2e -- down
