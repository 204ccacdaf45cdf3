"""Leader failure under acks=all load: no acknowledged write is lost, and writes to the
failed leader's partitions resume quickly (target < 1 s; asserted < 30 s)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.cluster


def test_acks_all_survives_leader_kill9(harness):
    c = harness.cluster(3)
    run = harness.run(c, partitions=3)
    p = run.producer(rate=400)
    run.group(members=2)
    p.wait_acked(300, timeout_s=30)

    victim = c.leader_of(run.topic, 0)
    t_kill = c.kill9(victim)
    harness.leader_outage(c, p, run.topic, 0, victim, t_kill, f"kill -9 of leader {victim}")
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)  # two brokers left: still >= min.insync

    c.restart(victim)
    rejoin = c.wait_fully_replicated([run.topic], timeout_s=60)
    harness.measure(f"broker {victim} restarted: ready, then back in every ISR (0 under-replicated)",
                    f"{rejoin:.2f}s after ready")
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)
    run.finish_and_check(max_failed=0)


def test_acks_all_survives_kill9_of_the_active_controller(harness):
    """The worst case: the killed broker leads a partition *and* the metadata quorum, so
    a new controller must be elected before anyone can fence it."""
    c = harness.cluster(3)
    controller = c.metadata().controller_id
    others = sorted(n for n in c.nodes if n != controller)
    # Partition 0 is led by the controller (first replica = preferred leader).
    run = harness.run(c, partitions=3, assignment=[[controller, *others], [others[0], controller, others[1]],
                                                   [others[1], others[0], controller]])
    p = run.producer(rate=400)
    p.wait_acked(300, timeout_s=30)
    assert c.leader_of(run.topic, 0) == controller, "partition 0 starts on its preferred leader"
    assert c.metadata().controller_id == controller, "the controller stayed put"

    t_kill = c.kill9(controller)
    harness.leader_outage(c, p, run.topic, 0, controller, t_kill,
                          f"kill -9 of the active controller {controller}, leader of partition 0")
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)

    c.restart(controller)
    c.wait_fully_replicated([run.topic], timeout_s=60)
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)
    run.finish_and_check(max_failed=0)
