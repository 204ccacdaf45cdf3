#!/usr/bin/env bash
# Builds, once, the binaries of the e2e control plane from the Go module proxy
# and caches them:
#
#   $SKIFF_CACHE_DIR/etcd/<etcd version>/bin/etcd
#   $SKIFF_CACHE_DIR/k8s/<k8s version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $SKIFF_CACHE_DIR/helm/<helm version>/bin/helm
#
# (SKIFF_CACHE_DIR defaults to ~/.cache/skiff). The Go module and build caches
# live under $SKIFF_CACHE_DIR/go, so a rerun on the same machine is fast, and
# anything already built is skipped (a warm run takes about a second).
#
# Versions come from the wrapper modules next to this script (etcd/go.mod,
# kubernetes/go.mod, with their go.sum) and from HELM_VERSION below; bump them
# there and nowhere else.
#
# Usage: build.sh [--check] [etcd|kubernetes|helm]...   (default: all three)
#   --check  build nothing; exit 1 if a binary is missing.
# Stdout: one NAME=DIR line per component (SKIFF_ETCD_BIN_DIR, SKIFF_K8S_BIN_DIR,
# SKIFF_HELM_BIN_DIR); progress and timings go to stderr.
#
# Needs: Go >= 1.26 (GO, else `go` on PATH, else /usr/local/go/bin/go),
# network access to the Go module proxy and checksum database, flock.
set -euo pipefail

# Newest helm v3 on the module proxy when this was written; helm v4 is a
# different module (helm.sh/helm/v4) with a different CLI.
HELM_VERSION=v3.22.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SKIFF_CACHE_DIR:-$HOME/.cache/skiff}
nice_level=${SKIFF_BUILD_NICE:-10}

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_only=0
components=()
for arg in "$@"; do
  case $arg in
    --check) check_only=1 ;;
    etcd | kubernetes | helm) components+=("$arg") ;;
    -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (expected --check, etcd, kubernetes or helm)" ;;
  esac
done
[[ ${#components[@]} -gt 0 ]] || components=(etcd kubernetes helm)

# Version of module $2 as required by the wrapper go.mod $1.
required_version() {
  local v
  v=$(awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1")
  [[ -n $v ]] || die "$1 does not require $2"
  printf '%s\n' "$v"
}

etcd_version=$(required_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
k8s_version=$(required_version "$here/kubernetes/go.mod" k8s.io/kubernetes)
etcd_bin=$cache/etcd/$etcd_version/bin
k8s_bin=$cache/k8s/$k8s_version/bin
helm_bin=$cache/helm/$HELM_VERSION/bin
k8s_binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

bin_dir() {
  case $1 in etcd) echo "$etcd_bin" ;; kubernetes) echo "$k8s_bin" ;; helm) echo "$helm_bin" ;; esac
}
binaries() {
  case $1 in etcd) echo etcd ;; kubernetes) echo "${k8s_binaries[@]}" ;; helm) echo helm ;; esac
}
present() {
  local b dir
  dir=$(bin_dir "$1")
  for b in $(binaries "$1"); do [[ -x $dir/$b ]] || return 1; done
}
print_dirs() {
  local c
  for c in "${components[@]}"; do
    case $c in
      etcd) echo "SKIFF_ETCD_BIN_DIR=$etcd_bin" ;;
      kubernetes) echo "SKIFF_K8S_BIN_DIR=$k8s_bin" ;;
      helm) echo "SKIFF_HELM_BIN_DIR=$helm_bin" ;;
    esac
  done
}

if ((check_only)); then
  missing=0
  for c in "${components[@]}"; do
    present "$c" || { log "$c: missing in $(bin_dir "$c")"; missing=1; }
  done
  print_dirs
  exit "$missing"
fi

# Fast path: nothing to build, no Go needed.
all_present=1
for c in "${components[@]}"; do present "$c" || all_present=0; done
if ((all_present)); then
  print_dirs
  exit 0
fi

go_cmd=${GO:-$(command -v go || true)}
[[ -n $go_cmd ]] || go_cmd=/usr/local/go/bin/go
[[ -x $go_cmd ]] || die "no Go toolchain found (set GO=/path/to/go; Go >= 1.26 is needed)"
go_minor=$("$go_cmd" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[[ -n $go_minor && $go_minor -ge 26 ]] || die "$go_cmd is $("$go_cmd" env GOVERSION); Go >= 1.26 is needed"

mkdir -p "$cache"
export GOMODCACHE=$cache/go/mod
export GOCACHE=$cache/go/build
export GOTOOLCHAIN=local # never download another toolchain behind our back
export GOWORK=off
export CGO_ENABLED=0

# Concurrent callers (parallel tests, two terminals) wait for each other; the
# loser then finds the binaries present and skips.
exec 9>"$cache/.build.lock"
flock 9

# Runs a build into a fresh directory, then moves the binaries into place, so
# an interrupted build never leaves a half-written binary that looks cached.
# $1 component, $2 version, then the command (which writes into $out).
build_into() {
  local component=$1 version=$2 dir started b
  shift 2
  dir=$(bin_dir "$component")
  if present "$component"; then return 0; fi
  out=$(mktemp -d "$cache/.build-$component.XXXXXX")
  # shellcheck disable=SC2064 # expand $out now: it is reassigned per component
  trap "rm -rf '$out'" EXIT
  log "building $component $version into $dir (cold builds take minutes)"
  started=$SECONDS
  # Niced: the Go build shares the machine with Rust builds and tests. The
  # subshell runs under `set -e` outside any `||`, so any failing step stops it.
  set +e
  (
    set -e
    renice -n "$nice_level" -p "$BASHPID" >/dev/null
    "$@"
  )
  local status=$?
  set -e
  ((status == 0)) || die "building $component $version failed (exit $status)"
  mkdir -p "$dir"
  for b in $(binaries "$component"); do
    [[ -x $out/$b ]] || die "building $component produced no $b"
    mv -f "$out/$b" "$dir/$b"
  done
  rm -rf "$out"
  trap - EXIT
  local took=$((SECONDS - started))
  log "built $component $version in ${took}s"
  printf '%s %s %s %ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$component" "$version" "$took" \
    >>"$cache/build-times.log"
}

build_etcd() {
  (cd "$here/etcd" && "$go_cmd" build -trimpath -ldflags '-s -w' -o "$out/etcd" .)
}

build_kubernetes() {
  local minor=${k8s_version#v1.}
  minor=${minor%%.*}
  # Every staging module must be replaced by the release that matches
  # k8s.io/kubernetes, or the binaries mix API machinery from two releases.
  local staging=v0.${k8s_version#v1.} bad
  bad=$(awk -v want="$staging" '$2 == "=>" && $1 ~ /^k8s\.io\// && $4 != want { print $1 " " $4 }' \
    "$here/kubernetes/go.mod")
  [[ -z $bad ]] || die "kubernetes/go.mod replaces these with a version other than $staging: $bad"

  local build_date
  # The module's publication time, not the wall clock, so builds are reproducible.
  build_date=$(cd "$here/kubernetes" &&
    "$go_cmd" list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
  [[ -n $build_date ]] || build_date=1970-01-01T00:00:00Z

  # What `kubectl version` and the apiserver's /version report. The module
  # proxy does not carry the git commit, so gitCommit names the module instead.
  local ldflags='-s -w' key val pkg
  for kv in "gitVersion=$k8s_version" "gitMajor=1" "gitMinor=$minor" \
    "gitCommit=k8s.io/kubernetes@$k8s_version" "gitTreeState=clean" "buildDate=$build_date"; do
    key=${kv%%=*} val=${kv#*=}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.$key=$val"
    done
  done

  local pkgs=()
  for b in "${k8s_binaries[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$here/kubernetes" && "$go_cmd" build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}")
}

build_helm() {
  # `go install pkg@version` builds with helm's own go.mod and go.sum (verified
  # against the checksum database), so no wrapper module is needed.
  local gomod client_go k8s_minor
  gomod=$("$go_cmd" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  client_go=$(required_version "$gomod" k8s.io/client-go) # v0.N.x
  k8s_minor=${client_go#v0.}
  k8s_minor=${k8s_minor%%.*}
  # Same stamping as helm's Makefile for a release build.
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  GOBIN=$out "$go_cmd" install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

total_started=$SECONDS
for c in "${components[@]}"; do
  case $c in
    etcd) build_into etcd "$etcd_version" build_etcd ;;
    kubernetes) build_into kubernetes "$k8s_version" build_kubernetes ;;
    helm) build_into helm "$HELM_VERSION" build_helm ;;
  esac
done
log "done in $((SECONDS - total_started))s"
print_dirs
