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
