"""A rolling restart the way the operator does it (one broker at a time: wait for the
restart-safety probe, SIGTERM, restart on the same data directory, wait until nothing
is under-replicated) keeps every acknowledged write, and with idempotence and enough
retries not a single send fails."""

from __future__ import annotations

import time

import pytest

from cluster import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.rolling]


def test_rolling_restart_keeps_acked_data(harness):
    c = harness.cluster(3)
    run = harness.run(c, partitions=3)
    p = run.producer(rate=400)
    run.group(members=2)
    p.wait_acked(300, timeout_s=30)

    for node in sorted(c.nodes):
        others = [i for i in c.nodes if i != node]
        wait_until(lambda: c.restart_safety(node)[0], f"GET /v1/restart-safety of broker {node} to say safe", 30)
        t0 = time.monotonic()
        stop_s = c.terminate(node)
        # With one broker down every partition is at min.insync.replicas: restarting
        # another one now would stop writes, and the probe must say so.
        wait_until(lambda: not c.restart_safety(others[0])[0],
                   f"GET /v1/restart-safety of broker {others[0]} to say unsafe while broker {node} is down", 15)
        c.restart(node)
        t_ready = time.monotonic()
        caught_up = c.wait_fully_replicated([run.topic], timeout_s=60)
        gap = max(p.max_ack_gap(part, t0 - 0.5, time.monotonic()) for part in run.partition_ids)
        harness.measure(f"rolling restart of broker {node}",
                        f"SIGTERM to exit {stop_s * 1000:.0f} ms, restart to ready {t_ready - t0 - stop_s:.2f}s, "
                        f"then caught up {caught_up:.2f}s; longest ack gap on any partition {gap * 1000:.0f} ms")
        p.wait_acked(150, since=time.monotonic(), timeout_s=30)

    run.finish_and_check(max_failed=0)
