"""The replication throttle (``follower.replication.throttled.rate``) slows a replica
being moved onto a broker, and nothing else; it is set while the brokers run, as a
cluster-wide dynamic broker setting, with Apache Kafka's own ``kafka-configs``
(``ConfigCommand --entity-type brokers --entity-default``), and removed the same way.

Three brokers and a fourth. One topic, two partitions led by broker 0: partition 0 on
brokers 0, 1, 2 holds ~8 MB; partition 1 on brokers 0, 1, 3 takes acks=all writes
throughout. Partition 0 is reassigned onto broker 3 (replacing broker 2), so broker
3's one fetcher (to broker 0) carries both the moving replica and the in-sync replica
that every acks=all write waits on. With the throttle the move takes at least ~ bytes /
rate (asserted with a 0.7 margin: a lower bound is what the throttle guarantees) while
the acks on partition 1 never stop for more than a second, and broker 3's /metrics
counts the moved bytes as throttled; without it the same move is faster (printed, with
the longest ack gap of each run; only "faster" is asserted, timings on a loaded machine
are not a test)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from cluster import HarnessError, http, wait_until

CONFIG_TOOL = "kafka.admin.ConfigCommand"
from workload import AckingProducer

pytestmark = [pytest.mark.cluster, pytest.mark.throttle]

THROTTLE_KEY = "follower.replication.throttled.rate"
RATE = 2_000_000  # bytes per second
VALUE = 16 * 1024
MESSAGES = 512  # 8 MiB of values
MOVING, IN_SYNC = 0, 1
ASSIGNMENT = [[0, 1, 2], [0, 1, 3]]
TARGET = [0, 1, 3]
MAX_ACK_GAP_S = 1.0
MOVE_TIMEOUT_S = 30.0


def fill(c, topic: str) -> int:
    """Write MESSAGES values of VALUE bytes to the moving partition; returns the bytes."""
    p = Producer(c.client_config(acks="all", **{"linger.ms": 20, "enable.idempotence": True}))
    failed = []
    for i in range(MESSAGES):
        value = bytes([i % 251]) * VALUE
        while True:
            try:
                p.produce(topic, value=value, partition=MOVING,
                          on_delivery=lambda err, _msg: err is not None and failed.append(str(err)))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(60)
    if left or failed:
        raise HarnessError(f"filling {topic}-{MOVING}: {left} unflushed, {len(failed)} failed {failed[:3]}")
    return MESSAGES * VALUE


def throttle_metrics(c, node: int) -> dict[str, float]:
    """The replication throttle's counters in a broker's /metrics."""
    status, body = http("GET", f"{c.nodes[node].admin_url}/metrics")
    assert status == 200, f"/metrics of broker {node}: {status}"
    found = {}
    for line in body.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name.startswith("skiff_replication_throttled_"):
            found[name] = float(line.rsplit(" ", 1)[1])
    return found


def set_cluster_throttle(c, rate: int | None) -> None:
    """Set (or, with None, delete) the cluster-wide dynamic throttle with kafka-configs,
    and check that the cluster describes it back."""
    change = (["--add-config", f"{THROTTLE_KEY}={rate}"] if rate is not None
              else ["--delete-config", THROTTLE_KEY])
    bootstrap = c.bootstrap(c.serving_ids())
    code, out = c.kafka_tool(CONFIG_TOOL, "--bootstrap-server", bootstrap, "--entity-type", "brokers",
                             "--entity-default", "--alter", *change)
    if code != 0:
        raise HarnessError(f"kafka-configs --alter {change}: exit {code}: {out[-2000:]}")
    code, out = c.kafka_tool(CONFIG_TOOL, "--bootstrap-server", bootstrap, "--entity-type", "brokers",
                             "--entity-default", "--describe")
    shown = f"{THROTTLE_KEY}={rate}" in out
    if code != 0 or shown != (rate is not None):
        raise HarnessError(f"kafka-configs --describe after {change}: exit {code}: {out[-2000:]}")


def move(harness, throttled: bool) -> tuple[float, float, int]:
    """One cluster, one move of the filled partition onto broker 3 under acks=all load on
    the other. Returns (seconds the move took, longest ack gap on the other, bytes)."""
    c = harness.cluster(4, voters=3)
    try:
        topic = f"throttle-{'on' if throttled else 'off'}"
        c.create_topic(topic, config={"min.insync.replicas": "2"}, assignment=ASSIGNMENT)
        nbytes = fill(c, topic)
        p = AckingProducer(c.bootstrap(), topic, [IN_SYNC], name=f"acks-{topic}", rate=200,
                           log_path=c.client_log).start()
        p.wait_acked(100, timeout_s=30)
        if throttled:
            set_cluster_throttle(c, RATE)

        admin = KafkaAdminClient(bootstrap_servers=c.bootstrap(), request_timeout_ms=10_000)
        try:
            errors = admin.alter_partition_reassignments({TopicPartition(topic, MOVING): TARGET})
        finally:
            admin.close()
        # Measured from the answer: the move may have started a little before, which
        # only makes the lower bound below stricter.
        t0 = time.monotonic()
        if any(e is not None for e in errors.values()):
            raise HarnessError(f"AlterPartitionReassignments refused: {errors}")
        last = None

        def moved():
            nonlocal last
            last = c.partitions(topic)[MOVING]
            return sorted(last.replicas) == TARGET and sorted(last.isrs) == TARGET

        try:
            wait_until(moved, f"{topic}-{MOVING} moved onto broker 3", MOVE_TIMEOUT_S, 0.05)
        except HarnessError as e:
            raise HarnessError(f"{e}; last: replicas {last.replicas if last else None}, "
                               f"isr {last.isrs if last else None}") from None
        t1 = time.monotonic()
        p.wait_acked(50, since=t1, timeout_s=30)
        gap = p.max_ack_gap(IN_SYNC, t0, t1)
        left = p.stop(flush_timeout_s=30)
        assert not left and not p.failures, p.summary()
        c.assert_no_crash()
        if throttled:
            # The broker copies its counters into /metrics every few seconds.
            seen = {}

            def counted():
                nonlocal seen
                seen = throttle_metrics(c, 3)
                return seen.get("skiff_replication_throttled_bytes_total", 0) >= nbytes

            try:
                wait_until(counted, "broker 3's /metrics to count the moved bytes as throttled", 15.0, 0.5)
            except HarnessError as e:
                raise HarnessError(f"{e}: {seen}") from None
            harness.measure("broker 3 /metrics after the throttled move",
                            ", ".join(f"{k} {v:.6g}" for k, v in sorted(seen.items())))
            set_cluster_throttle(c, None)
        return t1 - t0, gap, nbytes
    finally:
        c.close()


def test_throttle_slows_only_the_moving_replica(harness):
    took, gap, nbytes = move(harness, throttled=True)
    floor = nbytes / RATE * 0.7
    harness.measure(f"move of {nbytes / 1e6:.1f} MB at follower.replication.throttled.rate={RATE}",
                    f"{took:.2f}s (lower bound {floor:.2f}s); longest gap between acks=all acks on the "
                    f"in-sync partition {gap * 1000:.0f} ms")
    free_took, free_gap, _ = move(harness, throttled=False)
    harness.measure(f"move of {nbytes / 1e6:.1f} MB unthrottled",
                    f"{free_took:.2f}s; longest gap between acks=all acks on the in-sync partition "
                    f"{free_gap * 1000:.0f} ms")
    assert took >= floor, f"the throttled move took {took:.2f}s, less than {floor:.2f}s: not throttled"
    assert gap <= MAX_ACK_GAP_S, f"acks=all on the in-sync partition stopped for {gap:.2f}s during the move"
    # Unthrottled, the move is bound by the disk (fsync of every fetched chunk): 0.3 s to
    # 2.5 s on a loaded 2-core machine. Only that it is faster is asserted.
    assert free_took < took, f"unthrottled {free_took:.2f}s is not faster than throttled {took:.2f}s"
