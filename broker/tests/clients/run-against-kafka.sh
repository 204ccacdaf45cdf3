#!/usr/bin/env bash
# Proves the suites themselves: starts Apache Kafka single-node on loopback with
# e2e/tools/kafka.sh (fetching it on first use), runs run.sh against it, stops Kafka.
#
#   broker/tests/clients/run-against-kafka.sh [SUITE...]
#
# Environment: SKIFF_KAFKA_PORT (default 19092; Kafka also takes the next port for its
# controller), KAFKA_VERSION, SKIFF_CACHE_DIR, and everything run.sh reads.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_SH=$HERE/../../../e2e/tools/kafka.sh
PORT=${SKIFF_KAFKA_PORT:-19092}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/skiff-kafka-single.XXXXXX")

stop_kafka() {
  "$KAFKA_SH" stop "$DIR" || true
  rm -rf "$DIR"
}
trap stop_kafka EXIT
trap 'exit 130' INT TERM

"$KAFKA_SH" start-single "$DIR" "$PORT" >/dev/null
SKIFF_BOOTSTRAP=127.0.0.1:$PORT "$HERE/run.sh" "$@"
