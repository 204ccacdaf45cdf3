"""A leader that stops (SIGSTOP: a GC pause, a frozen VM) longer than
broker.session.timeout.ms is fenced: the quorum elects new leaders and drops it from
the ISRs, writes go on, and when it continues it rejoins as a follower. While it is
stopped it cannot acknowledge anything; when it continues, requests that waited in its
sockets must not be acknowledged unless they really are committed.

How the stale leader is exercised (``test_stale_leader_cannot_ack_after_pause``), with
real clients only:

1. A confluent-kafka idempotent producer ("stuck", request.timeout.ms 30 s, longer than
   the pause) writes to the only partition; its in-flight Produce requests at SIGSTOP
   sit in the stopped leader's socket and get their answers from it after SIGCONT.
2. Once Metadata names a new leader, one more Produce request (acks=-1) is written on a
   TCP connection to the stopped broker opened before the pause (``RawProduce``,
   record batch encoded by kafka-python). It is the first thing the old leader reads
   when it continues, before it can have heard that it was deposed.
3. A producer created after the election ("fresh") writes through the new leader while
   the old one is stopped, so the offsets the old leader would hand out are taken.

Whatever the old leader answers, the checker then requires every acknowledged message
(of all three) to be in the final log at its acknowledged offset, once, in order.
Kafka's answer to (2) is an error (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH or
REQUEST_TIMED_OUT); a success is accepted only if the checker finds the records.
"""

from __future__ import annotations

import time

import pytest

from checker import Ack, payload
from cluster import wait_until
from workload import ERROR_NAMES, RawProduce

pytestmark = [pytest.mark.cluster, pytest.mark.fencing]

SESSION_TIMEOUT = {"broker.session.timeout.ms": "1000"}
PAUSE_S = 3.0


def wait_out_of_isr(cluster, topic: str, victim: int, timeout_s: float) -> float:
    """Wait until ``victim`` is in no ISR of ``topic`` (per the serving brokers)."""
    t0 = time.monotonic()
    wait_until(lambda: all(victim not in p.isrs for p in cluster.partitions(topic).values()),
               f"broker {victim} to be dropped from every ISR of {topic}", timeout_s)
    return time.monotonic() - t0


def test_paused_broker_is_fenced_and_rejoins(harness):
    c = harness.cluster(3, settings=SESSION_TIMEOUT)
    run = harness.run(c, partitions=3)
    p = run.producer(rate=400)
    run.group(members=2)
    p.wait_acked(300, timeout_s=30)

    victim = c.leader_of(run.topic, 0)
    t_stop = c.sigstop(victim)
    new_leader = c.wait_leader(run.topic, 0, not_in=[victim], timeout_s=15)
    t_elected = time.monotonic()
    out_of_isr = wait_out_of_isr(c, run.topic, victim, timeout_s=15)
    # writes go on (on every partition) while the old leader is stopped
    for part in run.partition_ids:
        p.wait_acked(30, partition=part, since=t_elected, timeout_s=20)
    time.sleep(max(0.0, t_stop + PAUSE_S - time.monotonic()))
    assert c.nodes[victim].paused
    gap = p.max_ack_gap(0, t_stop - 0.5, time.monotonic())
    harness.measure(f"SIGSTOP of leader {victim} (session timeout 1 s)",
                    f"Metadata named leader {new_leader} after {(t_elected - t_stop) * 1000:.0f} ms; "
                    f"out of every ISR {out_of_isr * 1000:.0f} ms later; longest ack gap on partition 0 "
                    f"{gap * 1000:.0f} ms (target < 1000 ms); paused {time.monotonic() - t_stop:.1f}s")

    c.sigcont(victim)
    rejoin = c.wait_fully_replicated([run.topic], timeout_s=60)
    harness.measure(f"broker {victim} continued: back in every ISR", f"{rejoin:.2f}s")
    if c.has_admin_http:
        print(f"/v1/status of broker {victim} after rejoining: {c.status(victim)}")
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)
    run.finish_and_check(max_failed=0)


def test_stale_leader_cannot_ack_after_pause(harness):
    c = harness.cluster(3, settings=SESSION_TIMEOUT)
    run = harness.run(c, partitions=1)
    topic = run.topic
    stuck = run.producer("stuck", rate=300, config={"request.timeout.ms": 30_000})
    stuck.wait_acked(200, timeout_s=30)

    victim = c.leader_of(topic, 0)
    raw = RawProduce("127.0.0.1", c.nodes[victim].kafka_port)
    raw.connect()
    try:
        acked_before = stuck.acked()
        t_stop = c.sigstop(victim)
        new_leader = c.wait_leader(topic, 0, not_in=[victim], timeout_s=15)
        raw_values = [payload("raw", i) for i in range(10)]
        raw.send(topic, 0, raw_values, timeout_ms=5_000)
        fresh = run.producer("fresh", rate=300)
        fresh.wait_acked(100, timeout_s=20)
        time.sleep(max(0.0, t_stop + PAUSE_S - time.monotonic()))
        pending = stuck.unreported()
        acked_during_pause = stuck.acked() - acked_before
        t_cont = c.sigcont(victim)
        try:
            error, base_offset = raw.response(timeout_s=30)
        except ConnectionError:  # closing the connection acknowledges nothing: fine
            error, base_offset = None, -1
        answered = time.monotonic() - t_cont
    finally:
        raw.close()

    run.extra_producers.append("raw")
    if error == 0:
        run.extra_acks += [Ack(0, base_offset + i, v) for i, v in enumerate(raw_values)]
    harness.measure(
        f"stale leader {victim} (new leader {new_leader})",
        f"request sent to it while stopped answered "
        f"{'by closing the connection' if error is None else ERROR_NAMES.get(error, error)}"
        f"{f' at offset {base_offset}' if error == 0 else ''} {answered * 1000:.0f} ms after SIGCONT; "
        f"'stuck' producer had {pending} messages unreported at SIGCONT, {acked_during_pause} acked during the pause")
    stuck.wait_acked(100, since=time.monotonic(), timeout_s=30)  # the stuck producer moved to the new leader
    c.wait_fully_replicated([topic], timeout_s=60)
    run.finish_and_check(max_failed=0)
