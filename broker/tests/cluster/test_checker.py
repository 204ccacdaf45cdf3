"""The checker itself, on fake data: a clean history passes, and each kind of injected
damage is reported (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import pytest

from checker import Ack, Read, check, parse_payload, payload

pytestmark = pytest.mark.harness


def history(partitions: int = 3, per_partition: int = 20):
    """Two producers interleaved round-robin over the partitions; every message acked."""
    acks, log = [], []
    next_offset = [0] * partitions
    for seq in range(per_partition * partitions):
        for producer in ("a", "b"):
            p = seq % partitions
            value = payload(producer, seq)
            acks.append(Ack(p, next_offset[p], value))
            log.append(Read(p, next_offset[p], value))
            next_offset[p] += 1
    return acks, log, {p: n for p, n in enumerate(next_offset)}


def kinds(report) -> set[str]:
    return {k for k, v in report.violations.items() if v}


def test_payload_round_trip():
    assert parse_payload(payload("p1", 42)) == ("p1", 42)
    assert parse_payload("garbage") is None


def test_clean_history_passes():
    acks, log, ends = history()
    report = check(acks, log, group_reads=log + log[:10], log_end=ends, committed=ends, producers=["a", "b"])
    assert report.ok, report.summary()
    assert "OK" in report.summary()


def test_unacknowledged_messages_in_the_log_are_fine():
    acks, log, ends = history()
    report = check(acks[:-7], log, log_end=ends)
    assert report.ok, report.summary()


def test_injected_loss_is_detected():
    acks, log, ends = history()
    lost = log.pop(17)
    report = check(acks, log, log_end=ends)
    assert not report.ok
    assert kinds(report) == {"lost", "gap"}
    assert lost.payload in report.summary()
    with pytest.raises(AssertionError, match="lost"):
        report.assert_ok()


def test_truncated_tail_is_detected():
    acks, log, ends = history()
    tail = max(r.offset for r in log if r.partition == 1)
    log = [r for r in log if not (r.partition == 1 and r.offset == tail)]
    report = check(acks, log)  # the reader stopped where the log ends
    assert kinds(report) == {"lost", "short log"}


def test_overwritten_offset_is_detected():
    acks, log, ends = history()
    victim = log[5]
    log[5] = Read(victim.partition, victim.offset, payload("c", 1))
    report = check(acks, log, log_end=ends, producers=["a", "b", "c"])
    assert kinds(report) == {"lost"}
    assert "which holds c-000000001" in report.summary()


def test_moved_message_is_detected():
    acks, log, ends = history()
    a, b = log[0], log[6]
    assert a.partition == b.partition
    log[0], log[6] = Read(a.partition, a.offset, b.payload), Read(b.partition, b.offset, a.payload)
    report = check(acks, log, log_end=ends)
    assert "moved" in kinds(report)


def test_duplicate_is_detected():
    acks, log, ends = history()
    p = 0
    last = max((r for r in log if r.partition == p), key=lambda r: r.offset)
    log.append(Read(p, ends[p], last.payload))  # a retried batch stored twice
    ends[p] += 1
    report = check(acks, log, log_end=ends)
    assert kinds(report) == {"duplicate"}


def test_two_acks_at_one_offset_are_detected():
    acks, log, ends = history()
    acks.append(Ack(acks[0].partition, acks[0].offset, payload("c", 0)))
    report = check(acks, log, log_end=ends)
    assert "offset reused by acks" in kinds(report)


def test_offset_with_two_payloads_across_reads_is_detected():
    acks, log, ends = history()
    group = list(log)
    group[4] = Read(group[4].partition, group[4].offset, payload("z", 9))
    report = check(acks, log, group_reads=group, log_end=ends)
    assert "offset holds two payloads" in kinds(report)


def test_reordering_is_detected():
    acks, log, ends = history(partitions=1)
    # swap two messages of producer a (offsets 0 and 2), and their acks with them
    log[0], log[2] = Read(0, 0, log[2].payload), Read(0, 2, log[0].payload)
    acks = [Ack(r.partition, r.offset, r.payload) for r in log]
    report = check(acks, log, log_end=ends)
    assert kinds(report) == {"order"}


def test_group_that_missed_messages_is_detected():
    acks, log, ends = history()
    report = check(acks, log, group_reads=log[:-3], log_end=ends)
    assert kinds(report) == {"group missed"}


def test_stale_committed_offsets_are_detected():
    acks, log, ends = history()
    committed = dict(ends)
    committed[2] -= 1
    report = check(acks, log, group_reads=log, log_end=ends, committed=committed)
    assert kinds(report) == {"group offsets"}


def test_foreign_payload_is_detected():
    acks, log, ends = history()
    p = 0
    log.append(Read(p, ends[p], "hello"))
    ends[p] += 1
    report = check(acks, log, log_end=ends, producers=["a", "b"])
    assert kinds(report) == {"foreign payload"}


def test_report_lists_only_the_first_few_examples():
    acks, log, ends = history()
    report = check(acks, [], log_end=ends)
    assert len(report.violations["lost"]) == len(acks)
    assert report.summary().count("not in the log") == 5


def test_ack_without_offset_needs_its_payload_in_the_partition():
    acks, log, ends = history()
    a = acks[10]
    unplaced = [x if x is not a else Ack(a.partition, -1, a.payload) for x in acks]
    assert check(unplaced, log, group_reads=log, log_end=ends).ok
    report = check(unplaced, [r for r in log if r.payload != a.payload], log_end=ends)
    assert "lost" in kinds(report)
    assert "without offset" in report.summary()
