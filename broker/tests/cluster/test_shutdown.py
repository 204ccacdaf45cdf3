"""SIGTERM answers the requests a broker holds parked instead of waiting them out.

A broker may hold a request for a long time on purpose: a JoinGroup until the
rebalance completes (up to the group's rebalance timeout), an acks=all produce until
every in-sync replica has the batch. Shutting down, it must answer them (the client
then goes to the new coordinator or leader) rather than keep its clients, and the
restart of a rolling update, waiting for its in-flight-request limit (10 s).

The bound asserted (3 s) is a correctness bound, not a speed target: far above an
answered shutdown (tens of milliseconds) and far below the time a parked request
would hold it (a 60 s rebalance timeout; a 30 s replica lag limit)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from cluster import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.rolling]

STOP_BOUND_S = 3.0


def test_sigterm_answers_a_parked_join_group(harness):
    if harness.target == "kafka":
        pytest.skip("measured on Skiff only (Kafka's coordinator also answers, after its own shutdown steps)")
    c = harness.cluster(1, clustered=False)
    run = harness.run(c, partitions=1, rf=1)
    p = run.producer(rate=100)
    p.wait_acked(20, timeout_s=30)
    conf = c.client_config(**{"group.id": "parked-join", "max.poll.interval.ms": 60_000,
                              "session.timeout.ms": 45_000})
    a, b = Consumer(conf), Consumer(conf)
    try:
        a.subscribe([run.topic])
        wait_until(lambda: a.poll(0.2) is not None or bool(a.assignment()), "the first member's assignment", 30)
        # The second member's JoinGroup now waits for the first one to rejoin, which it
        # does only when it polls again: not before the broker stops.
        b.subscribe([run.topic])
        for _ in range(10):
            b.poll(0.1)
        stop_s = c.terminate(0)
    finally:
        for consumer in (a, b):
            consumer.close()
    harness.measure("single broker with a JoinGroup parked: SIGTERM to exit", f"{stop_s * 1000:.0f} ms")
    assert stop_s < STOP_BOUND_S, f"SIGTERM took {stop_s:.1f} s: the parked JoinGroup was waited out"
    c.restart(0)
    run.finish_and_check(max_failed=0)


def test_sigterm_of_a_leader_answers_its_parked_acks_all_produce(harness):
    if harness.target == "kafka":
        pytest.skip("measured on Skiff only")
    # A paused follower stays in the ISR (and unfenced) for 30 s, so acks=all produce
    # requests stay parked on the leader that long.
    c = harness.cluster(3, settings={"broker.session.timeout.ms": "30000", "replica.lag.time.max.ms": "30000"})
    # The paused follower comes next in replica order, so SIGTERM hands it the leadership
    # while it is stopped: it learns that it leads only after SIGCONT, after the clients
    # have (the window of librdkafka's duplicates at a leader change, its issue 4953).
    # Neither broker leads the metadata quorum: pausing that leader elects a new
    # controller, which fences the previous one at once (and acks=all goes on without it).
    controller = c.metadata().controller_id
    leader, paused = sorted(n for n in c.nodes if n != controller)
    run = harness.run(c, partitions=1, assignment=[[leader, paused, controller]])
    p = run.producer(rate=100)
    p.wait_acked(50, timeout_s=30)
    assert c.leader_of(run.topic, 0) == leader, "the partition starts on its preferred leader"
    c.sigstop(paused)
    time.sleep(1.0)
    assert p.acked(since=time.monotonic() - 0.5) == 0, "acks=all went on with an in-sync follower paused"
    stop_s = c.terminate(leader)
    harness.measure("leader with acks=all produce parked: SIGTERM to exit", f"{stop_s * 1000:.0f} ms")
    c.sigcont(paused)
    assert c.wait_leader(run.topic, 0, not_in=[leader]) == paused, "the paused follower took over"
    c.restart(leader)
    c.wait_fully_replicated([run.topic], timeout_s=60)
    p.wait_acked(50, since=time.monotonic(), timeout_s=60)
    assert stop_s < STOP_BOUND_S, f"SIGTERM took {stop_s:.1f} s: the parked produce was waited out"
    run.finish_and_check(max_failed=0)
