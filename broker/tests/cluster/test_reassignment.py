"""Replication-factor changes through partition reassignment, driven by Apache Kafka's
own tool (``kafka-reassign-partitions --execute/--verify``, Kafka 3.9.2 from the cache):
RF 1 -> 3 copies the data to two more brokers, so the original single copy's broker
can die without losing anything; RF 3 -> 2 drops a replica, and the broker that lost it
is no longer needed. Writes go on throughout."""

from __future__ import annotations

import time

import pytest

from checker import check
from workload import read_all

pytestmark = [pytest.mark.cluster, pytest.mark.reassignment]

ORIGINAL = 0  # the broker holding the only copy at RF 1


def test_reassignment_rf1_to_3_and_3_to_2(harness):
    c = harness.cluster(3)
    # RF 1 on one broker; min.insync.replicas 1 while there is a single replica.
    run = harness.run(c, rf=1, assignment=[[ORIGINAL], [ORIGINAL]])
    topic, parts = run.topic, run.partition_ids
    p = run.producer(rate=300)
    run.group(members=2)
    p.wait_acked(500, timeout_s=30)

    # RF 1 -> 3 under load
    took = c.reassign({(topic, i): [ORIGINAL, 1, 2] for i in parts})
    c.wait_fully_replicated([topic], timeout_s=60)
    assert all(sorted(x.replicas) == [0, 1, 2] for x in c.partitions(topic).values()), c.partitions(topic)
    harness.measure("reassignment RF 1 -> 3 (--execute to --verify complete)", f"{took:.1f}s")
    c.alter_topic_config(topic, {"min.insync.replicas": "2"})
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)

    # The original single copy's broker dies: everything acknowledged so far is on 1 and 2.
    t_kill = c.kill9(ORIGINAL)
    for i in parts:
        c.wait_leader(topic, i, not_in=[ORIGINAL], timeout_s=30)
    c.wait_leaders_agree(topic, not_in=[ORIGINAL], timeout_s=30)
    acked = p.checker_acks()
    # A new leader's high watermark is what it last heard as a follower; it
    # passes the last acknowledged offsets once the other follower has fetched
    # from it (Kafka's rule too). Read again until it has, within a bound.
    deadline = time.monotonic() + 10
    while True:
        mid = read_all(c.bootstrap(c.serving_ids()), topic, parts, log_path=c.client_log, rounds=1)
        report = check(acked, mid.reads, log_end=mid.ends)
        if report.ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(f"with broker {ORIGINAL} dead: {report.summary()}")
    report.assert_ok()
    p.wait_acked(200, since=t_kill, timeout_s=30)

    c.restart(ORIGINAL)
    c.wait_fully_replicated([topic], timeout_s=60)

    # RF 3 -> 2: drop the original broker's replicas (it leads them: leadership moves).
    took = c.reassign({(topic, i): [1, 2] for i in parts})
    c.wait_fully_replicated([topic], timeout_s=60)
    assert all(sorted(x.replicas) == [1, 2] for x in c.partitions(topic).values()), c.partitions(topic)
    harness.measure("reassignment RF 3 -> 2 (--execute to --verify complete)", f"{took:.1f}s")
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)

    # It holds no replica of the topic any more: killing it does not matter.
    c.kill9(ORIGINAL)
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)
    run.finish_and_check(max_failed=0)
