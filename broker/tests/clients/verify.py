"""Content checks shared by the real-client suites (stdlib only).

Every suite produces self-describing messages: key ``k007`` and value
``<run>:k007:000042`` (run id, the key again, the per-key sequence number). Reading
them back, a suite hands the consumed records to :func:`check_log`, which fails on
loss, duplication, a value under the wrong key, a key split over partitions, or a key
whose sequence runs backwards within its partition.

``kcat.sh`` uses the command line form::

    python3 verify.py check-log EXPECTED CONSUMED [--contiguous-from-zero]

EXPECTED holds ``key<TAB>value`` lines in produce order, CONSUMED holds
``partition<TAB>offset<TAB>key<TAB>value`` lines.
"""

from __future__ import annotations

import collections
import sys
from typing import Iterable, NamedTuple, Sequence


class Record(NamedTuple):
    """One consumed record."""

    partition: int
    offset: int
    key: str
    value: str


def make_messages(run_id: str, count: int, keys: int) -> list[tuple[str, str]]:
    """``count`` (key, value) pairs spread round-robin over ``keys`` keys, in produce order."""
    seq: collections.Counter[str] = collections.Counter()
    messages = []
    for i in range(count):
        key = f"k{i % keys:03d}"
        messages.append((key, f"{run_id}:{key}:{seq[key]:06d}"))
        seq[key] += 1
    return messages


def _sample(items: Iterable[object], n: int = 5) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def check_log(
    consumed: Sequence[Record],
    expected: Sequence[tuple[str, str]],
    *,
    contiguous_from_zero: bool = False,
) -> None:
    """Assert that ``consumed`` is exactly ``expected``: no loss, no duplicate, keys in order.

    ``contiguous_from_zero``: each partition must hold offsets 0..n-1 with no gap, true
    for a fresh topic written without transactions or compaction.
    """
    seen_at: dict[tuple[int, int], Record] = {}
    duplicates = []
    for r in consumed:
        if (r.partition, r.offset) in seen_at:
            duplicates.append((r.partition, r.offset))
        seen_at[(r.partition, r.offset)] = r
    assert not duplicates, f"{len(duplicates)} records delivered more than once: {_sample(duplicates)}"

    want = collections.Counter(expected)
    got = collections.Counter((r.key, r.value) for r in consumed)
    missing = want - got
    extra = got - want
    assert not missing and not extra, (
        f"consumed {len(consumed)} of {len(expected)} records; "
        f"missing {sum(missing.values())}: {_sample(missing)}; unexpected {sum(extra.values())}: {_sample(extra)}"
    )

    mismatched = [r for r in consumed if r.value.split(":")[1] != r.key]
    assert not mismatched, f"values stored under the wrong key: {_sample(mismatched)}"

    partitions_of_key: dict[str, set[int]] = collections.defaultdict(set)
    for r in consumed:
        partitions_of_key[r.key].add(r.partition)
    split = {k: sorted(p) for k, p in partitions_of_key.items() if len(p) > 1}
    assert not split, f"keys spread over several partitions: {_sample(split.items())}"

    by_partition: dict[int, list[Record]] = collections.defaultdict(list)
    for r in consumed:
        by_partition[r.partition].append(r)
    for partition, records in by_partition.items():
        records.sort(key=lambda r: r.offset)
        if contiguous_from_zero:
            offsets = [r.offset for r in records]
            assert offsets == list(range(len(records))), (
                f"partition {partition}: offsets are not 0..{len(records) - 1}: "
                f"first {offsets[:5]}, last {offsets[-5:]}"
            )
        last_seq: dict[str, int] = {}
        for r in records:
            seq = int(r.value.rsplit(":", 1)[1])
            assert seq > last_seq.get(r.key, -1), (
                f"partition {partition}: key {r.key} out of order at offset {r.offset} "
                f"(sequence {seq} after {last_seq[r.key]})"
            )
            last_seq[r.key] = seq


def _read_tsv(path: str, fields: int) -> list[list[str]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != fields:
                raise SystemExit(f"{path}:{n}: expected {fields} tab-separated fields, got {line!r}")
            rows.append(parts)
    return rows


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "check-log":
        print(__doc__, file=sys.stderr)
        return 2
    expected = [(k, v) for k, v in _read_tsv(argv[1], 2)]
    consumed = [Record(int(p), int(o), k, v) for p, o, k, v in _read_tsv(argv[2], 4)]
    try:
        check_log(consumed, expected, contiguous_from_zero="--contiguous-from-zero" in argv[3:])
    except AssertionError as e:
        print(f"check-log: {e}", file=sys.stderr)
        return 1
    print(f"check-log: {len(consumed)} records over {len({r.partition for r in consumed})} partitions match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
