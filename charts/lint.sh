#!/usr/bin/env bash
# `make lint` for the Helm chart: helm lint (strict) and helm template with the
# default values, with every optional feature on, and watching one namespace;
# then the rendered RBAC against what operator/src calls (check-rbac.py), the
# metrics the alerts and dashboard query against what the code exports
# (check-metrics.py), and
# the chart's appVersion against the workspace version (the operator's default
# broker image tag), and the Dockerfiles' toolchain and image names. helm
# comes from e2e/controlplane/build.sh: built once from the Go module proxy
# and cached, like the control plane (`make deps`); HELM=/path/to/helm skips it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart=$root/charts/skiff-operator
cd "$root"

if [[ -n ${HELM:-} ]]; then
  helm=$HELM
else
  dir=$(e2e/controlplane/build.sh helm | sed -n 's/^SKIFF_HELM_BIN_DIR=//p')
  helm=$dir/helm
fi
[[ -x $helm ]] || { echo "lint.sh: no helm at $helm" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

all=(-f "$chart/ci/all-features-values.yaml")
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" "${all[@]}"
"$helm" lint --strict "$chart" --set watchNamespace=kafka
"$helm" template skiff "$chart" --namespace skiff >"$out/default.yaml"
"$helm" template skiff "$chart" --namespace skiff "${all[@]}" >"$out/all.yaml"
"$helm" template skiff "$chart" --namespace skiff --set watchNamespace=kafka \
  --set replicaCount=1 --set leaderElection.enabled=false >"$out/namespaced.yaml"
for f in default all namespaced; do
  printf 'helm template (%s): %s\n' "$f" "$(grep '^kind:' "$out/$f.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}')"
done
python3 charts/check-rbac.py "$out/default.yaml"
python3 charts/check-metrics.py "$out/all.yaml"

# The templates must not silently drop the feature flags.
for kind in ServiceMonitor PodMonitor PrometheusRule ConfigMap; do
  grep -q "^kind: $kind\$" "$out/all.yaml" || { echo "lint.sh: no $kind with every feature on" >&2; exit 1; }
  ! grep -q "^kind: $kind\$" "$out/default.yaml" || { echo "lint.sh: $kind rendered by default" >&2; exit 1; }
done
if ! grep -q '^kind: RoleBinding$' "$out/namespaced.yaml" || grep -q '^kind: ClusterRoleBinding$' "$out/namespaced.yaml"; then
  echo "lint.sh: watchNamespace must bind the ClusterRole with a RoleBinding only" >&2
  exit 1
fi
# The dashboard is valid JSON.
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$chart/dashboards/skiff.json"

workspace=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
app=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$chart/Chart.yaml")
[[ $workspace == "$app" ]] ||
  { echo "lint.sh: Chart.yaml appVersion $app is not the workspace version $workspace" >&2; exit 1; }
# The images: each Dockerfile builds with the pinned toolchain, and is tagged
# with the name the chart (operator) and the operator (broker) default to.
toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
operator_repo=$(sed -n '/^image:/,/^[^ ]/s/^  repository: //p' "$chart/values.yaml")
broker_repo=$(sed -n 's/^pub const DEFAULT_IMAGE_REPOSITORY: &str = "\(.*\)";/\1/p' operator/src/crd/cluster.rs)
for pair in "operator/Dockerfile=$operator_repo" "broker/Dockerfile=$broker_repo"; do
  f=${pair%%=*} repo=${pair#*=}
  grep -qx "ARG RUST_VERSION=$toolchain" "$f" ||
    { echo "lint.sh: $f does not build with rust-toolchain.toml's $toolchain" >&2; exit 1; }
  grep -q "docker build -f $f -t $repo:" "$f" ||
    { echo "lint.sh: $f is not the image ${repo:-?} the chart/operator default to" >&2; exit 1; }
done
echo "lint.sh: chart ok"
