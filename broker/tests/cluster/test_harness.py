"""The harness against one broker without the cluster flags (today's broker): every
fault helper, the workload and the checker work end to end, and the checker catches
damage to a real run's data. These pass before the cluster lands."""

from __future__ import annotations

import time

import pytest

from checker import check
from cluster import Cluster, Missing

pytestmark = pytest.mark.harness


def test_harness_on_one_broker_kill9_pause_sigterm(harness):
    c = harness.cluster(1, clustered=False)
    run = harness.run(c, partitions=3, rf=1)
    p = run.producer(rate=800)
    run.group(members=2)
    p.wait_acked(400, timeout_s=30)

    # the HTTP admin helpers parse what the broker serves
    status = c.status(0)
    assert c.under_replicated(0) == 0 and c.partitions_led(0) >= 3, status
    safe, verdict = c.restart_safety(0)
    print(f"/v1/status: {status}\n/v1/restart-safety: safe={safe} {' '.join(verdict.split())}")

    # kill -9 and restart on the same data directory
    t_kill = c.kill9(0)
    time.sleep(0.3)
    c.restart(0)
    p.wait_acked(100, partition=0, since=time.monotonic(), timeout_s=30)
    harness.measure("single broker: kill -9, 0.3 s down, restart: longest ack gap on partition 0",
                    f"{p.max_ack_gap(0, t_kill - 0.5, time.monotonic()) * 1000:.0f} ms")

    # SIGSTOP / SIGCONT
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)
    t_stop = c.sigstop(0)
    time.sleep(1.0)
    c.sigcont(0)
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)
    harness.measure("single broker: longest ack gap on partition 0 around a 1 s SIGSTOP",
                    f"{p.max_ack_gap(0, t_stop - 0.5, time.monotonic()) * 1000:.0f} ms")

    # SIGTERM exits 0; restart
    stop_s = c.terminate(0)
    c.restart(0)
    harness.measure("single broker: SIGTERM to exit", f"{stop_s * 1000:.0f} ms")
    p.wait_acked(200, since=time.monotonic(), timeout_s=30)

    report = run.finish_and_check(max_failed=0)
    assert report.counts["acknowledged"] >= 1000

    # The same real data, damaged: the checker must notice.
    acks = [a for pr in run.producers for a in pr.checker_acks()]
    full = run.last_full_read
    victim = next(r for r in full.reads if (r.partition, r.offset) == (acks[len(acks) // 2].partition,
                                                                        acks[len(acks) // 2].offset))
    damaged = check(acks, [r for r in full.reads if r != victim], log_end=full.ends)
    assert not damaged.ok and damaged.violations["lost"], damaged.summary()
    print("with one record removed from the real read:", damaged.summary().splitlines()[0])


def test_missing_cluster_flags_are_reported_by_name(harness, broker_bin, tmp_path):
    """A broker without --controller-listen/--voters fails the start with a message naming
    the flag (no silent skip); once the cluster lands, a one-voter cluster simply starts."""
    c = Cluster(broker_bin, tmp_path / "one-voter", 1, clustered=True)
    try:
        c.start()
    except Missing as e:
        assert "--controller-listen" in str(e) or "--voters" in str(e) or "setting" in str(e), str(e)
        print(f"as expected before the cluster lands: {str(e).splitlines()[0]}")
    else:
        print("this broker accepts the cluster flags: a one-voter cluster started")
    finally:
        c.close()
