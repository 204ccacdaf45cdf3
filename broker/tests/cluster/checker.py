"""The durability checker: given what producers were told (acknowledgements) and what
consumers read back, list every way the log disagrees with the promises made.

Pure Python and no Kafka client, so it is unit-tested with fake data
(``test_checker.py``). Payloads are ``<producer>-<seq>`` (see ``payload``): the
producer's name and a sequence number that grows in production order.

Rules (each a kind of violation in the report):

- ``lost``: an acknowledged message is in neither the full read nor, if given, the
  group's reads;
- ``moved``: an acknowledged message is in the log, but not at the offset it was
  acknowledged with (the acknowledged offset holds something else or nothing);
- ``offset reused by acks``: two different messages were acknowledged at one offset;
- ``offset holds two payloads``: two reads (full read and group reads together)
  returned different payloads for one offset;
- ``duplicate``: one payload at more than one offset (idempotence broken);
- ``order``: within a partition, one producer's sequence numbers go backwards;
- ``gap``: the full read of a partition skips offsets between its start and its end;
- ``short log``: the log of a partition ends at or before an acknowledged offset;
- ``group missed``: the consumer group never delivered an acknowledged message;
- ``group offsets``: the group's committed offset of a partition is behind the last
  acknowledged message it consumed, or beyond the end of the log;
- ``foreign payload``: a payload that no producer of this run wrote.

Unacknowledged (failed or never reported) messages may or may not be in the log; if
they are, they obey ``duplicate``, ``order`` and ``offset holds two payloads`` too.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

#: How many examples of each kind of violation a report lists.
EXAMPLES = 5

_PAYLOAD = re.compile(r"^(?P<producer>[A-Za-z0-9_.]+)-(?P<seq>[0-9]+)$")


def payload(producer: str, seq: int) -> str:
    """The payload of message ``seq`` of ``producer``: unique in a run, ordered per producer."""
    return f"{producer}-{seq:09d}"


def parse_payload(value: str) -> tuple[str, int] | None:
    """``(producer, seq)`` of a payload made by ``payload``, or None."""
    m = _PAYLOAD.match(value)
    return (m["producer"], int(m["seq"])) if m else None


class Ack(NamedTuple):
    """A message its producer was told is stored (delivery report without error)."""

    partition: int
    offset: int
    payload: str


class Read(NamedTuple):
    """A message a consumer returned."""

    partition: int
    offset: int
    payload: str


@dataclass
class Report:
    """What the checker found: violations by kind and a few counts."""

    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def add(self, kind: str, text: str) -> None:
        self.violations[kind].append(text)

    def summary(self) -> str:
        figures = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        if self.ok:
            return f"checker: OK ({figures})"
        lines = [f"checker: {sum(len(v) for v in self.violations.values())} violation(s) ({figures})"]
        for kind, items in self.violations.items():
            if not items:
                continue
            lines.append(f"  {kind}: {len(items)}, e.g.")
            lines.extend(f"    {text}" for text in items[:EXAMPLES])
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(self.summary())

    def __str__(self) -> str:
        return self.summary()


def check(
    acks: Iterable[Ack | tuple[int, int, str]],
    full_read: Iterable[Read | tuple[int, int, str]],
    *,
    group_reads: Iterable[Read | tuple[int, int, str]] | None = None,
    log_start: dict[int, int] | None = None,
    log_end: dict[int, int] | None = None,
    committed: dict[int, int] | None = None,
    producers: Iterable[str] | None = None,
) -> Report:
    """Check the acknowledgements against the reads.

    ``full_read``: every message of every partition read by one fresh consumer from
    ``log_start`` (default offset 0) to ``log_end`` (the high watermarks it read up
    to; if omitted, the last offset read + 1). ``group_reads``: everything the
    consumer group returned (redeliveries after a rebalance are fine: the same
    payload at the same offset). ``committed``: the group's committed offsets.
    ``producers``: the producer names of this run (other names are foreign).
    """
    report = Report()
    acks = [Ack(*a) for a in acks]
    if group_reads is not None:
        group_reads = list(group_reads)
    full = [Read(*r) for r in full_read]
    group = None if group_reads is None else [Read(*r) for r in group_reads]
    known = None if producers is None else set(producers)

    # What the log holds, according to the full read and (where it overlaps) the group.
    at: dict[tuple[int, int], str] = {}
    where: dict[str, list[tuple[int, int]]] = defaultdict(list)
    conflicts: dict[tuple[int, int], set[str]] = defaultdict(set)
    for r in full:
        pos = (r.partition, r.offset)
        if pos in at:
            conflicts[pos].update({at[pos], r.payload})
            if at[pos] == r.payload:
                report.add("offset holds two payloads", f"p{r.partition}@{r.offset}: full read returned it twice ({r.payload})")
            continue
        at[pos] = r.payload
        where[r.payload].append(pos)
    group_at: dict[tuple[int, int], str] = {}
    if group is not None:
        for r in group:
            pos = (r.partition, r.offset)
            for other in (at.get(pos), group_at.get(pos)):
                if other is not None and other != r.payload:
                    conflicts[pos].update({other, r.payload})
            group_at.setdefault(pos, r.payload)
    for pos, values in sorted(conflicts.items()):
        if len(values) > 1:
            report.add("offset holds two payloads", f"p{pos[0]}@{pos[1]}: {sorted(values)}")

    # Acknowledgements without an offset (a delivery report may lack one, e.g. librdkafka
    # reports a retried batch the broker calls a duplicate as delivered at offset -1):
    # the payload must be in its partition; where exactly cannot be checked.
    unplaced = [a for a in acks if a.offset is None or a.offset < 0]
    acks = [a for a in acks if not (a.offset is None or a.offset < 0)]
    group_payloads = {v: pos for pos, v in group_at.items()}
    for a in unplaced:
        if not any(p == a.partition for p, _ in where.get(a.payload, [])):
            report.add("lost", f"{a.payload} acknowledged (without an offset) on p{a.partition}, not in the log"
                       + (f"; found at {where[a.payload]}" if a.payload in where else ""))
        elif group is not None and a.payload not in group_payloads:
            report.add("group missed", f"{a.payload} (acknowledged without an offset) on p{a.partition}")

    # Acknowledgements: each unique per offset, each in the log where it was acknowledged.
    acked_at: dict[tuple[int, int], str] = {}
    for a in acks:
        pos = (a.partition, a.offset)
        if pos in acked_at and acked_at[pos] != a.payload:
            report.add("offset reused by acks", f"p{a.partition}@{a.offset} acknowledged for {acked_at[pos]} and for {a.payload}")
        acked_at.setdefault(pos, a.payload)
    for a in acks:
        pos = (a.partition, a.offset)
        stored = at.get(pos)
        if stored == a.payload:
            continue
        found = where.get(a.payload) or [p for p, v in group_at.items() if v == a.payload]
        if stored is None and found == [pos]:
            report.add("lost", f"{a.payload} at p{a.partition}@{a.offset} was read by the group but is not in the "
                       "full read (lost since, or the log end was reported too low: see short log)")
        elif found:
            report.add("moved", f"{a.payload} acknowledged at p{a.partition}@{a.offset}, found at "
                       + ", ".join(f"p{p}@{o}" for p, o in found)
                       + (f"; p{a.partition}@{a.offset} holds {stored}" if stored else ""))
        elif stored is not None:
            report.add("lost", f"{a.payload} acknowledged at p{a.partition}@{a.offset}, which holds {stored}")
        else:
            report.add("lost", f"{a.payload} acknowledged at p{a.partition}@{a.offset}, not in the log")

    # Idempotence: a payload is stored once.
    for value, positions in where.items():
        if len(positions) > 1:
            report.add("duplicate", f"{value} at " + ", ".join(f"p{p}@{o}" for p, o in sorted(positions)))

    # Per-partition order of each producer's sequence numbers; foreign payloads.
    by_partition: dict[int, list[Read]] = defaultdict(list)
    for (p, o), value in at.items():
        by_partition[p].append(Read(p, o, value))
    for p, reads in by_partition.items():
        reads.sort(key=lambda r: r.offset)
        last: dict[str, tuple[int, int]] = {}
        for r in reads:
            parsed = parse_payload(r.payload)
            if parsed is None or (known is not None and parsed[0] not in known):
                report.add("foreign payload", f"p{p}@{r.offset}: {r.payload!r}")
                continue
            producer, seq = parsed
            if producer in last and seq < last[producer][0]:
                report.add("order", f"p{p}: {payload(producer, seq)} at offset {r.offset} after "
                           f"{payload(producer, last[producer][0])} at offset {last[producer][1]}")
            last[producer] = (seq, r.offset)

    # The full read is contiguous and reaches past every acknowledged offset.
    partitions = set(by_partition) | {a.partition for a in acks} | set(log_end or {})
    ends: dict[int, int] = {}
    for p in sorted(partitions):
        offsets = sorted(r.offset for r in by_partition.get(p, []))
        start = (log_start or {}).get(p, 0)
        end = (log_end or {}).get(p, offsets[-1] + 1 if offsets else start)
        ends[p] = end
        expected = set(range(start, end))
        holes = sorted(expected - set(offsets))
        if holes:
            report.add("gap", f"p{p}: {len(holes)} offset(s) in [{start}, {end}) not read, first {holes[:5]}")
        last_acked = max((a.offset for a in acks if a.partition == p), default=-1)
        if last_acked >= end:
            report.add("short log", f"p{p}: log ends at {end}, but offset {last_acked} was acknowledged")

    # The consumer group delivered every acknowledged message and committed its progress.
    if group is not None:
        for a in acks:
            if group_at.get((a.partition, a.offset)) is None:
                report.add("group missed", f"{a.payload} at p{a.partition}@{a.offset}")
        if committed is not None:
            for p in sorted(partitions):
                last_acked = max((a.offset for a in acks if a.partition == p), default=-1)
                c = committed.get(p)
                if last_acked >= 0 and (c is None or c < last_acked + 1):
                    report.add("group offsets", f"p{p}: committed {c}, but the group consumed up to acknowledged offset {last_acked}")
                elif c is not None and c > ends[p]:
                    report.add("group offsets", f"p{p}: committed {c} is beyond the log end {ends[p]}")

    report.counts = {
        "acknowledged": len(acks) + len(unplaced),
        **({"acknowledged without offset": len(unplaced)} if unplaced else {}),
        "in log": len(at),
        **({"group reads": len(group)} if group is not None else {}),
        "partitions": len(partitions),
    }
    return report
