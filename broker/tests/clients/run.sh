#!/usr/bin/env bash
# Runs the real-client compatibility suites against the broker at SKIFF_BOOTSTRAP and
# exits non-zero if any fails. The same suites pass against Apache Kafka
# (e2e/tools/kafka.sh start-single) and must pass against skiff-broker.
#
#   SKIFF_BOOTSTRAP=127.0.0.1:9092 broker/tests/clients/run.sh [SUITE...]
#
# Suites: kcat, confluent-kafka, kafka-python, java (default: all, in that order).
# Environment: SKIFF_BOOTSTRAP (required); SKIFF_TEST_REPLICATION_FACTOR (default 1);
# SKIFF_CACHE_DIR (default ~/.cache/skiff); SKIFF_CLIENTS_LOG_DIR (full logs; default a
# fresh temporary directory). Run install.sh once first.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SKIFF_BOOTSTRAP:?set SKIFF_BOOTSTRAP, e.g. 127.0.0.1:9092}"
export SKIFF_BOOTSTRAP
CACHE_DIR=${SKIFF_CACHE_DIR:-$HOME/.cache/skiff}
export SKIFF_CLIENTS_PYTHON=${SKIFF_CLIENTS_PYTHON:-$CACHE_DIR/clients-venv/bin/python}
export PYTHONDONTWRITEBYTECODE=1
# Backstop per suite; the tests' own deadlines are far shorter.
SUITE_TIMEOUT=900

[[ -x $SKIFF_CLIENTS_PYTHON ]] || { echo "run.sh: no $SKIFF_CLIENTS_PYTHON; run $HERE/install.sh first" >&2; exit 2; }

suite_kcat() { "$HERE/kcat.sh"; }
suite_confluent_kafka() { "$SKIFF_CLIENTS_PYTHON" -m pytest -c "$HERE/pytest.ini" "$HERE/test_confluent_kafka.py"; }
suite_kafka_python() { "$SKIFF_CLIENTS_PYTHON" -m pytest -c "$HERE/pytest.ini" "$HERE/test_kafka_python.py"; }
suite_java() {
  mvn -B -ntp -Dstyle.color=never -f "$HERE/java/pom.xml" "-Dmaven.repo.local=$CACHE_DIR/m2/repository" test
}

# The line that sums a suite up, from its log.
summary_of() {
  local suite=$1 log=$2
  case $suite in
    kcat) grep -E '^kcat: ' "$log" | tail -n1 ;;
    confluent-kafka | kafka-python) grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$log" | tail -n1 | tr -d '=' | sed 's/^ *//; s/ *$//' ;;
    java) { grep -E '^\[(INFO|ERROR|WARNING)\] Tests run: [0-9]+, Failures: [0-9]+, Errors: [0-9]+, Skipped: [0-9]+$' "$log" || true; } | tail -n1 | sed 's/^\[[A-Z]*\] //' ;;
  esac
}

# Maven's log is long; show the lines that matter and keep the rest in the file.
show() {
  if [[ $1 == java ]]; then
    grep --line-buffered -E 'Tests run:|FAIL|ERROR|BUILD|expected|Exception' || true
  else
    cat
  fi
}

# Internal: run one suite in this process (the loop below calls it under timeout, which
# kills the whole process group of a suite that overruns).
if [[ ${1:-} == --one ]]; then
  "suite_${2//-/_}"
  exit
fi

LOG_DIR=${SKIFF_CLIENTS_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/skiff-clients.XXXXXX")}
mkdir -p "$LOG_DIR"

suites=("$@")
((${#suites[@]} > 0)) || suites=(kcat confluent-kafka kafka-python java)
results=()
failures=0
echo "run.sh: suites ${suites[*]} against $SKIFF_BOOTSTRAP; full logs in $LOG_DIR"
for suite in "${suites[@]}"; do
  fn=suite_${suite//-/_}
  declare -F "$fn" >/dev/null || { echo "run.sh: unknown suite $suite" >&2; exit 2; }
  log=$LOG_DIR/$suite.log
  echo
  echo "=== $suite"
  started=$SECONDS
  set +e
  timeout --kill-after=10 "$SUITE_TIMEOUT" "$HERE/run.sh" --one "$suite" 2>&1 | tee "$log" | show "$suite"
  rc=${PIPESTATUS[0]}
  set -e
  elapsed=$((SECONDS - started))
  summary=$(summary_of "$suite" "$log")
  ((rc == 124)) && summary="timed out after ${SUITE_TIMEOUT}s; $summary"
  if ((rc == 0)); then status=PASS; else status=FAIL; failures=$((failures + 1)); fi
  results+=("$(printf '%-16s %s %4ss  %s' "$suite" "$status" "$elapsed" "${summary:-no summary, see $log}")")
done

echo
echo "=== summary (bootstrap $SKIFF_BOOTSTRAP)"
printf '%s\n' "${results[@]}"
((failures == 0)) || { echo "run.sh: $failures suite(s) failed; logs in $LOG_DIR" >&2; exit 1; }
