#!/usr/bin/env bash
# Installs what e2e/bench/bench.py needs and prints the Python to run it with:
# a venv with requirements.txt under the cache dir (rebuilt only when requirements.txt
# changes), plus gcc, Java and Maven from Debian if missing. Apache Kafka itself is
# fetched lazily by e2e/tools/kafka.sh.
#
#   "$(e2e/bench/install.sh)" e2e/bench/bench.py --quick
#
# Environment: SKIFF_CACHE_DIR (default ~/.cache/skiff).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${SKIFF_CACHE_DIR:-$HOME/.cache/skiff}
VENV=$CACHE_DIR/bench-venv

log() { printf 'install.sh: %s\n' "$*" >&2; }

as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if ((apt_updated == 0)); then
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v python3 >/dev/null || missing+=(python3)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$want" ]]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  log "creating $VENV from requirements.txt"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
  echo "$want" >"$VENV/.requirements.sha256"
fi

printf '%s\n' "$VENV/bin/python"
