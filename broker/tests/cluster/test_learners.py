"""Five brokers, three of them Raft voters and two learners (brokers that follow the
metadata log without voting). Learners lead partitions like any broker; killing a
learner that leads a partition, and then a voter that leads one, loses nothing."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.learners]

#: Preferred leaders (first replica) 3, 4, 0, 1, 2: brokers 3 and 4 are learners.
ASSIGNMENT = [[3, 0, 1], [4, 1, 2], [0, 2, 3], [1, 3, 4], [2, 4, 0]]


def test_five_brokers_with_learners(harness):
    c = harness.cluster(5, voters=3)
    assert c.learner_ids == [3, 4]
    run = harness.run(c, assignment=ASSIGNMENT)
    topic = run.topic
    leaders = {i: c.leader_of(topic, i) for i in run.partition_ids}
    learner_led = [i for i, leader in leaders.items() if leader in c.learner_ids]
    assert learner_led, f"no learner leads a partition (leaders {leaders}, preferred {[r[0] for r in ASSIGNMENT]})"
    print(f"leaders {leaders}; voters {c.voter_ids}, learners {c.learner_ids}")

    p = run.producer(rate=500)
    run.group(members=2)
    p.wait_acked(400, timeout_s=30)

    # a learner that leads a partition
    part = learner_led[0]
    victim = leaders[part]
    t = c.kill9(victim)
    harness.leader_outage(c, p, topic, part, victim, t, f"kill -9 of learner {victim} (leader)")
    c.restart(victim)
    c.wait_fully_replicated([topic], timeout_s=60)
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)

    # a voter that leads a partition (quorum 2 of 3 remains)
    part = next(i for i in run.partition_ids if c.leader_of(topic, i) in c.voter_ids)
    victim = c.leader_of(topic, part)
    t = c.kill9(victim)
    harness.leader_outage(c, p, topic, part, victim, t, f"kill -9 of voter {victim} (leader)")
    c.restart(victim)
    c.wait_fully_replicated([topic], timeout_s=60)
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)

    run.finish_and_check(max_failed=0)
