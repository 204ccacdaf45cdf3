#!/usr/bin/env bash
# kcat (Debian package, librdkafka inside) against the broker at SKIFF_BOOTSTRAP:
# metadata (-L), keyed produce (-P), consume everything back (-C -e), consume from a
# timestamp (-o s@<ms>), offsets for a timestamp (-Q), a consumer group (-G) that
# commits and resumes, and gzip/snappy/lz4/zstd batches passing through untouched. The topic (3 partitions) is created and deleted through the admin
# API by topic.py, so nothing depends on auto.create.topics.enable.
#
# Prints one "ok"/"not ok" line per check and a summary; exits non-zero if any failed.
# Environment: SKIFF_BOOTSTRAP (required), SKIFF_TEST_REPLICATION_FACTOR (default 1),
# SKIFF_CLIENTS_PYTHON (python with confluent-kafka; default the venv from install.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SKIFF_BOOTSTRAP:?set SKIFF_BOOTSTRAP, e.g. 127.0.0.1:9092}"
CACHE_DIR=${SKIFF_CACHE_DIR:-$HOME/.cache/skiff}
PYTHON=${SKIFF_CLIENTS_PYTHON:-$CACHE_DIR/clients-venv/bin/python}
RF=${SKIFF_TEST_REPLICATION_FACTOR:-1}
# Every kcat call is cut off after this long; librdkafka's own timeouts are shorter.
CALL_TIMEOUT=60
PARTITIONS=3
KEYS=30
PER_BATCH=1500

RUN=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOPIC=skiff-kcat-$RUN
GROUP=skiff-kcat-group-$RUN
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skiff-kcat.XXXXXX")
STARTED=$SECONDS
passed=0
failed=0

cleanup() {
  if [[ -f $WORK/topic-created ]]; then
    timeout "$CALL_TIMEOUT" "$PYTHON" "$HERE/topic.py" delete "$TOPIC" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kc() {
  timeout "$CALL_TIMEOUT" kcat -b "$SKIFF_BOOTSTRAP" -q \
    -X socket.timeout.ms=20000 -X socket.connection.setup.timeout.ms=10000 "$@"
}

# check NAME FUNCTION: run one check, report it, keep going on failure.
check() {
  local name=$1 fn=$2 n=$((passed + failed + 1))
  # In the background, not under "if", so errexit stops the check at its first failure.
  (set -e; "$fn") >"$WORK/$name.log" 2>&1 &
  if wait $!; then
    passed=$((passed + 1))
    echo "ok $n - $name"
  else
    failed=$((failed + 1))
    echo "not ok $n - $name"
    sed 's/^/#   /' "$WORK/$name.log" | tail -n 30
  fi
}

# messages FIRST COUNT: "key<TAB>value" lines i = FIRST..FIRST+COUNT-1 in the format of
# verify.py (key k<i mod KEYS>, value <run>:<key>:<per-key sequence>).
messages() {
  awk -v first="$1" -v count="$2" -v keys="$KEYS" -v run="$RUN" 'BEGIN {
    for (i = first; i < first + count; i++) {
      key = sprintf("k%03d", i % keys)
      printf "%s\t%s:%s:%06d\n", key, run, key, int(i / keys)
    }
  }'
}

now_ms() { date +%s%3N; }

create_topic() {
  timeout "$CALL_TIMEOUT" "$PYTHON" "$HERE/topic.py" create "$TOPIC" "$PARTITIONS" "$RF"
  touch "$WORK/topic-created"
}

metadata_lists_broker_and_topic() {
  kc -L -J >"$WORK/metadata.json"
  python3 - "$WORK/metadata.json" "$TOPIC" "$PARTITIONS" "$RF" "$SKIFF_BOOTSTRAP" <<'EOF'
import json, sys
path, topic, partitions, rf, bootstrap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
md = json.load(open(path))
brokers = {b["id"]: b["name"] for b in md["brokers"]}
assert brokers, "no brokers in metadata"
assert set(brokers.values()) & set(bootstrap.split(",")), f"bootstrap {bootstrap} not among brokers {brokers}"
matches = [t for t in md["topics"] if t["topic"] == topic]
assert len(matches) == 1, f"{topic} listed {len(matches)} times in metadata"
t = matches[0]
assert "error" not in t, f"topic error {t['error']}"
assert sorted(p["partition"] for p in t["partitions"]) == list(range(partitions)), t["partitions"]
for p in t["partitions"]:
    assert p["leader"] in brokers, f"partition {p['partition']}: leader {p['leader']} not a known broker"
    assert len(p["replicas"]) == rf, f"partition {p['partition']}: replicas {p['replicas']}"
    assert p["leader"] in [r["id"] for r in p["isrs"]], f"partition {p['partition']}: leader not in ISR"
print(f"{len(brokers)} broker(s), {topic} with {partitions} partitions")
EOF
}

produce_keyed() {
  messages 0 "$PER_BATCH" >"$WORK/batch1.tsv"
  messages "$PER_BATCH" "$PER_BATCH" >"$WORK/batch2.tsv"
  cat "$WORK/batch1.tsv" "$WORK/batch2.tsv" >"$WORK/all.tsv"
  # Input on stdin: kcat -P sends each file named as an argument as one single message.
  local produce=(-P -t "$TOPIC" -K $'\t' -X acks=all -X enable.idempotence=true -X linger.ms=5 -X message.timeout.ms=30000)
  kc "${produce[@]}" <"$WORK/batch1.tsv"
  # Every batch-1 record is stamped before SPLIT_MS and every batch-2 record after it.
  sleep 0.05
  now_ms >"$WORK/split_ms"
  sleep 0.05
  kc "${produce[@]}" <"$WORK/batch2.tsv"
}

consume_all_back() {
  kc -C -t "$TOPIC" -o beginning -e -f '%p\t%o\t%k\t%s\n' >"$WORK/consumed.tsv"
  python3 "$HERE/verify.py" check-log "$WORK/all.tsv" "$WORK/consumed.tsv" --contiguous-from-zero
}

consume_from_timestamp() {
  local split
  split=$(cat "$WORK/split_ms")
  kc -C -t "$TOPIC" -o "s@$split" -e -f '%p\t%o\t%k\t%s\t%T\n' >"$WORK/since.tsv"
  awk -F '\t' -v since="$split" '$5 < since { print "record stamped " $5 " before " since ": " $0; bad = 1 } END { exit bad }' "$WORK/since.tsv"
  cut -f 1-4 "$WORK/since.tsv" >"$WORK/since4.tsv"
  python3 "$HERE/verify.py" check-log "$WORK/batch2.tsv" "$WORK/since4.tsv"
}

query_offsets_for_timestamp() {
  local split p want got
  split=$(cat "$WORK/split_ms")
  for ((p = 0; p < PARTITIONS; p++)); do
    # The first batch-2 offset in this partition, or -1 (end) if batch 2 has none there.
    want=$(awk -F '\t' -v p="$p" '$1 == p && (min == "" || $2 < min) { min = $2 } END { print (min == "" ? -1 : min) }' "$WORK/since.tsv")
    got=$(kc -Q -t "$TOPIC:$p:$split" | awk '/offset/ { print $NF }')
    echo "partition $p: offset for $split is $got, first record since then $want"
    [[ $got == "$want" ]]
  done
}

group_commits_and_resumes() {
  # A kcat group member reads the whole topic, commits on exit; the next member of the
  # same group reads only what was produced afterwards. (No -o: in -G mode kcat applies
  # it to every assignment, overriding the committed offsets.)
  kc -G "$GROUP" -e -X auto.offset.reset=earliest -f '%p\t%o\t%k\t%s\n' "$TOPIC" >"$WORK/group1.tsv"
  python3 "$HERE/verify.py" check-log "$WORK/all.tsv" "$WORK/group1.tsv" --contiguous-from-zero
  messages $((2 * PER_BATCH)) 300 >"$WORK/batch3.tsv"
  kc -P -t "$TOPIC" -K $'\t' -X acks=all -X enable.idempotence=true <"$WORK/batch3.tsv"
  kc -G "$GROUP" -e -X auto.offset.reset=earliest -f '%p\t%o\t%k\t%s\n' "$TOPIC" >"$WORK/group2.tsv"
  python3 "$HERE/verify.py" check-log "$WORK/batch3.tsv" "$WORK/group2.tsv"
}

compressed_batches_pass_through() {
  # Each codec's batches are stored and served as the producer compressed them; the
  # broker checks framing and CRC only. One topic per codec, deleted afterwards.
  local codec topic
  for codec in gzip snappy lz4 zstd; do
    topic=$TOPIC-$codec
    timeout "$CALL_TIMEOUT" "$PYTHON" "$HERE/topic.py" create "$topic" 1 "$RF"
    messages 0 500 >"$WORK/$codec.tsv"
    kc -P -t "$topic" -K $'\t' -z "$codec" -X acks=all -X linger.ms=20 <"$WORK/$codec.tsv"
    kc -C -t "$topic" -o beginning -e -f '%p\t%o\t%k\t%s\n' >"$WORK/$codec-back.tsv"
    timeout "$CALL_TIMEOUT" "$PYTHON" "$HERE/topic.py" delete "$topic" >/dev/null
    echo "$codec: $(wc -l <"$WORK/$codec-back.tsv") records back"
    python3 "$HERE/verify.py" check-log "$WORK/$codec.tsv" "$WORK/$codec-back.tsv" --contiguous-from-zero
  done
}

command -v kcat >/dev/null || { echo "kcat not installed (run install.sh)" >&2; exit 1; }
echo "# kcat $(kcat -V 2>&1 | sed -n 's/^Version //p') against $SKIFF_BOOTSTRAP, topic $TOPIC"
check create_topic create_topic
if ((failed > 0)); then
  # Without the topic every other check would only wait out its own timeout.
  echo "kcat: topic creation failed; remaining checks not run"
  echo "kcat: $passed passed, $failed failed in $((SECONDS - STARTED))s"
  exit 1
fi
check metadata_lists_broker_and_topic metadata_lists_broker_and_topic
check produce_keyed produce_keyed
check consume_all_back consume_all_back
check consume_from_timestamp consume_from_timestamp
check query_offsets_for_timestamp query_offsets_for_timestamp
check group_commits_and_resumes group_commits_and_resumes
check compressed_batches_pass_through compressed_batches_pass_through
echo "kcat: $passed passed, $failed failed in $((SECONDS - STARTED))s"
((failed == 0))
