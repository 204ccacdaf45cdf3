#!/usr/bin/env bash
# Runs the broker's fuzz targets one after another, niced, and prints a summary
# line per target (execs, exec/s, edge coverage, corpus size, peak RSS).
#
#   broker/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS applies to every target given; without it `request` runs 600 s and
# the others 120 s. Targets default to all three. Environment:
#   SKIFF_FUZZ_SANITIZER  none (default) or address
#   SKIFF_FUZZ_STRICT=1   also fail on known, reported issues the harnesses mask
#   FUZZ_ARGS             extra libFuzzer flags, e.g. "-use_value_profile=1"
# Corpora grow in corpus/<target>/ (seeded from seeds/<target>/), crashes land in
# artifacts/<target>/, full logs in logs/. Exit status is non-zero if any target
# found a crash.
set -euo pipefail

cd "$(dirname "$0")"

seconds=""
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    seconds="$1"
    shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(request log_append segment_recovery)
fi
sanitizer="${SKIFF_FUZZ_SANITIZER:-none}"

# Brokers and logs under test write to TMPDIR; tmpfs keeps fsync cheap.
tmp_root=/dev/shm
[[ -d $tmp_root && -w $tmp_root ]] || tmp_root="${TMPDIR:-/tmp}"
scratch="$(mktemp -d "$tmp_root/skiff-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

mkdir -p logs
# -a: debug assertions and overflow checks, so arithmetic overflow is a finding.
nice -n 19 cargo +nightly fuzz build -a -s "$sanitizer"

status=0
for target in "${targets[@]}"; do
    secs="${seconds:-$([[ $target == request ]] && echo 600 || echo 120)}"
    mkdir -p "corpus/$target" "artifacts/$target"
    log="logs/$target-$(date +%Y%m%d-%H%M%S).log"
    echo "== $target: ${secs}s, sanitizer $sanitizer, log $log"
    started=$SECONDS
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    TMPDIR="$scratch" nice -n 19 cargo +nightly fuzz run -a -s "$sanitizer" "$target" \
        "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$((SECONDS - started))
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    last="$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")"
    printf '%s: %s s, %s execs, %s exec/s, cov %s edges, ft %s features, corpus %s (units/bytes), peak rss %s MB\n' \
        "$target" "$elapsed" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$(stat peak_rss_mb)"
    grep '^skiff-fuzz: [0-9]* inputs' "$log" | tail -1 || true
    if [[ $rc -ne 0 ]]; then
        status=1
        echo "$target: FAILED (exit $rc); first report lines:"
        grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer' "$log" || true
        grep -E 'Test unit written to' "$log" || true
    fi
done
exit $status
