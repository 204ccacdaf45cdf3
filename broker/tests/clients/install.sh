#!/usr/bin/env bash
# Installs what the real-client suites need on a Debian 12 machine: kcat (apt), a JDK and
# Maven (apt, if missing), a Python venv with requirements.txt under the cache dir, and
# the Java project's Maven dependencies (surefire's JUnit provider included) in the
# cache's Maven repository. Idempotent; a second run only compares checksums.
#
# Environment: SKIFF_CACHE_DIR (default ~/.cache/skiff).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${SKIFF_CACHE_DIR:-$HOME/.cache/skiff}
VENV=$CACHE_DIR/clients-venv
MAVEN_REPO=$CACHE_DIR/m2/repository

log() { printf 'install.sh: %s\n' "$*" >&2; }

as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if ((apt_updated == 0)); then
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v python3 >/dev/null || missing+=(python3)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

# The venv is rebuilt only when requirements.txt changes.
want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$want" ]]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  log "creating $VENV from requirements.txt"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$want" >"$VENV/.requirements.sha256"
fi

# Maven: resolve everything the test run needs, keyed by the pom's checksum. Running zero
# tests is what makes surefire resolve its JUnit platform provider (go-offline does not).
want=$(sha256sum "$HERE/java/pom.xml" | cut -d' ' -f1)
stamp=$CACHE_DIR/m2/java-clients.pom.sha256
if [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  log "resolving Maven dependencies of java/pom.xml into $MAVEN_REPO"
  mkdir -p "$MAVEN_REPO"
  mvn -B -ntp -q -Dstyle.color=never -f "$HERE/java/pom.xml" "-Dmaven.repo.local=$MAVEN_REPO" \
    dependency:go-offline test -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false >&2
  echo "$want" >"$stamp"
fi

log "ready: kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p'), $("$VENV/bin/python" --version), $(java -version 2>&1 | head -n1), $(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g')"
