"""The 3-broker scenarios of the benchmark issue (RF 3, min.insync.replicas 2).

Numbered as in the issue: 2 (acks=all throughput and produce latency), 3 (end-to-end
latency at a fixed offered load), 4 (failover: kill -9 of a leader), 5 (rolling restart),
6 (footprint rows of the cluster, in the footprint table) and 7 (1,000 partitions).

Brokers are expensive to start on a small machine, so scenarios share starts: scenario
2's start of each target also measures 3 (its table is a companion of 2), and one start
of each default-configured target runs 4, then 5, then 7 in that order (companions of
4). Selecting any of a group with --scenarios runs the whole group.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import cluster3
import loads
from brokers import BrokerError, Running, Target
from results import Row, Table
from scenarios import LAT_PCTS, Ctx, Scenario, step, throughput

KAFKA3 = Target("Kafka", "kafka", nodes=3)
SKIFF3 = Target("Skiff", "skiff", nodes=3)
SKIFF3_FSYNC = Target("Skiff (fsync)", "skiff", (("skiff.ack.durability", "fsync"),), nodes=3)
SKIFF3_MEMORY = Target("Skiff (memory)", "skiff", (("skiff.ack.durability", "memory"),), nodes=3)


@dataclass(frozen=True)
class ClusterSizes:
    partitions: int  # per topic in scenarios 2-5
    max_records: int  # scenario 2: unthrottled acks=all, 1 KiB
    fixed_seconds: float  # scenario 2: at the offered load, per generator
    e2e_seconds: float  # scenario 3
    fault_rate: float  # scenarios 4-5: idempotent producer, msgs/s
    steady_s: float  # scenarios 4-5: load before the first fault and after each recovery
    scale_partitions: int  # scenario 7
    scale_records: int  # scenario 7: 1 KiB acks=all over all partitions


QUICK = ClusterSizes(3, 100_000, 8, 8, 500, 3, 1000, 50_000)
FULL = ClusterSizes(3, 150_000, 12, 12, 800, 4, 1000, 100_000)
OUTAGE_S = 60  # longest wait for a partition to take acks=all writes again


def log(running: Running, msg: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {running.workdir.name}: {msg}", file=sys.stderr, flush=True)


def sizes(ctx: Ctx) -> ClusterSizes:
    import scenarios

    return QUICK if ctx.sizes is scenarios.QUICK else FULL


def new_topic(ctx: Ctx, running: Running, name: str, partitions: int) -> str:
    running.check_alive()
    cluster3.create_topic(running, name, partitions)
    return name


def _per_broker_mib(values_kib: list[int]) -> float:
    return statistics.mean(values_kib) / 1024 if values_kib else 0.0


# ---------------------------------------------------------------------------------------
# 6. footprint rows of the cluster (the footprint table is scenarios.footprint_table)

F3_START = "3 brokers: start to all ready (every /readyz 200, Metadata lists 3): ms"
F3_IDLE = "3 brokers: idle RSS per broker after start: MiB"
F3_LOAD_RSS = "3 brokers: RSS per broker after scenario 2's max load: MiB"
F3_PEAK = "3 brokers: peak RSS per broker during scenario 2 (VmHWM): MiB"
F3_CPU = "3 brokers: CPU per GB produced (1 KiB, acks=all, RF 3, sum of 3 brokers): s"
FOOT_ROWS = [Row(F3_START, "ms", "lower"), Row(F3_IDLE, "MiB", "lower"), Row(F3_LOAD_RSS, "MiB", "lower"),
             Row(F3_PEAK, "MiB", "lower"), Row(F3_CPU, "s", "lower")]
FOOT_NOTES = [
    "3-broker rows: per broker = mean over the three processes. Start to all ready: first process start to every "
    "broker ready (Skiff: /readyz 200; Kafka: port open) and listing all three in Metadata (Kafka's storage format "
    "not counted). Idle and after-load RSS: VmRSS; CPU: utime+stime of the three brokers during scenario 2's "
    "unthrottled acks=all ProducerPerformance, per GB of record values. Skiff in both durability modes."
]


def record_cluster_start(ctx: Ctx, running: Running) -> None:
    t = _kind(running)
    ctx.footprint.add(t, F3_START, running.start_to_serving_ms)
    ctx.footprint.add(t, F3_IDLE, running.idle_rss_kib / 1024 / 3)


def _kind(running: Running) -> Target:
    from scenarios import KAFKA, SKIFF

    return KAFKA if running.target.kind == "kafka" else SKIFF


# ---------------------------------------------------------------------------------------
# 2 + 3. acks=all throughput, produce latency and end-to-end latency at a fixed offered load


def c2_rows(ctx: Ctx) -> list[Row]:
    disk = {KAFKA3.label: "disk_cached", SKIFF3_FSYNC.label: "disk_fdatasync", SKIFF3_MEMORY.label: "disk_cached"}
    rows = [
        Row("max produce 1 KiB acks=all, ProducerPerformance: MB/s", "MB/s", "higher", limit=disk, plot="throughput",
            capacity=True),
        Row("max produce 1 KiB acks=all, ProducerPerformance: msgs/s", "msgs/s", "higher", capacity=True),
    ]
    for gen in ("ProducerPerformance", "librdkafka"):
        rows.append(Row(f"at the offered load, {gen}: achieved msgs/s", "msgs/s", "higher"))
        for pct, _ in LAT_PCTS:
            rows.append(Row(f"at the offered load, {gen}: {pct} ms", "ms", "lower", plot=gen, pct=pct))
    return rows


def c3_rows(ctx: Ctx) -> list[Row]:
    return [Row(f"librdkafka at the offered load: {pct} ms", "ms", "lower", plot="librdkafka", pct=pct)
            for pct, _ in LAT_PCTS] + [Row("librdkafka at the offered load: mean ms", "ms", "lower")]


def c2_measure(ctx: Ctx, table: Table, running: Running, run: int) -> None:
    cs, b = sizes(ctx), running.bootstrap
    e2e = ctx.companions["3"]
    topic = new_topic(ctx, running, "c2-max", cs.partitions)
    cpu0 = running.cpu_seconds()
    r = throughput(table, running, "max produce 1 KiB acks=all, ProducerPerformance",
                   lambda: loads.producer_performance(b, topic, cs.max_records, 1024, "all", log=ctx.log))
    if r is not None:
        k = _kind(running)
        ctx.footprint.add(k, F3_CPU, (running.cpu_seconds() - cpu0) / (r["records"] * 1024 / 1e9))
        ctx.footprint.add(k, F3_LOAD_RSS, _per_broker_mib(running.rss_per_node_kib()))
        ctx.footprint.add(k, F3_PEAK, _per_broker_mib(running.hwm_per_node_kib()))
    rate = ctx.cluster_rate
    if rate is None and running.target == table.baseline and r is not None:
        rate = ctx.cluster_rate = max(100.0, round(r["msgs_per_s"] * 0.5, -2))
        note = (f"Offered load: **{rate:,.0f} msgs/s** of 1 KiB = 50 % of Kafka's unthrottled acks=all rate with 3 "
                f"brokers in the first run ({r['msgs_per_s']:,.0f} msgs/s), the same for every target and run.")
        table.notes.insert(0, note)
        e2e.notes.insert(0, note)
    fixed = [r.metric for r in table.rows if r.metric.startswith("at the offered load")]
    e2e_rows = [r.metric for r in e2e.rows]
    if rate is None:
        why = "no offered load: Kafka's max in the first run failed"
        table.error(running.target, fixed, why)
        e2e.error(running.target, e2e_rows, why)
        return

    def at_offered_load(generator: str, load: Callable[[str], dict]) -> None:
        prefix = f"at the offered load, {generator}"
        topic = new_topic(ctx, running, f"c2-fixed-{generator.lower()}", cs.partitions)

        def measured() -> dict:
            r = load(topic)
            return {**r, f"{prefix}: achieved msgs/s": r["msgs_per_s"],
                    **{f"{prefix}: {pct} ms": r[key] for pct, key in LAT_PCTS}}

        r = step(table, running, [m for m in fixed if m.startswith(prefix)], measured)
        if r is not None:
            table.warn(running.target, r.get("warnings", []))

    n = int(rate * cs.fixed_seconds)
    at_offered_load("ProducerPerformance", lambda topic: loads.producer_performance(
        b, topic, n, 1024, "all", throughput=rate, log=ctx.log))
    at_offered_load("librdkafka", lambda topic: loads.rdkafka(
        "produce", b, topic, log=ctx.log, count=n, size=1024, acks="all", rate=rate, linger_ms=0))

    topic = new_topic(ctx, running, "c3-e2e", cs.partitions)

    def rd() -> dict:
        r = loads.rdkafka("e2e", b, topic, log=ctx.log, rate=rate, seconds=cs.e2e_seconds, size=1024, acks="all",
                          linger_ms=0)
        return {**r, **{f"librdkafka at the offered load: {p} ms": r[k] for p, k in LAT_PCTS},
                "librdkafka at the offered load: mean ms": r["mean_ms"]}

    r = step(e2e, running, e2e_rows, rd)
    if r is not None:
        e2e.warn(running.target, r.get("warnings", []))


def c2_notes(ctx: Ctx) -> list[str]:
    cs = sizes(ctx)
    given = [f"Offered load: **{ctx.cluster_rate:,.0f} msgs/s** of 1 KiB (given with --cluster-rate)."] \
        if ctx.cluster_rate else []
    return given + [
        f"3 brokers on this machine, one topic per step with {cs.partitions} partitions, RF 3, "
        "min.insync.replicas 2, acks=all, 1 KiB records, no compression. **Kafka does not fsync by default**: "
        "acks=all is answered once every ISR member has the record in its page cache. Skiff (fsync), its default, "
        "answers only after every ISR member fdatasynced it (group commit); Skiff (memory) answers like Kafka.",
        f"Max: {cs.max_records:,} records unthrottled (ProducerPerformance, its defaults: linger.ms 0, batch.size "
        f"16 KiB). At the offered load: {cs.fixed_seconds:.0f} s per generator; ProducerPerformance latencies in "
        "whole ms over every record (JVM warm-up included, for both brokers alike); librdkafka (linger.ms 0) in µs, "
        "produce() to delivery report, the first second left out.",
        f"Warm-up after each start, unmeasured, the same for both: {ctx.sizes.warmup_records:,} × 1 KiB acks=1 "
        f"(librdkafka) on an RF 3 topic and {2 * ctx.sizes.warmup_records:,} × 1 KiB acks=all (ProducerPerformance) "
        "on 3 partitions RF 3. Kafka's three JVMs share 2 cores here: their JIT warm-up is slower than a single "
        "node's, and whatever is left of it counts in Kafka's figures.",
        "Both brokers with their defaults apart from RF 3, min.insync.replicas 2 and the same log.segment.bytes "
        "(1 GiB, both defaults); Kafka with kafka-server-start.sh's JVM (-Xmx1G -Xms1G, G1).",
    ]


def c3_notes(ctx: Ctx) -> list[str]:
    cs = sizes(ctx)
    return [
        f"Same brokers and start as scenario 2 (measured right after it). librdkafka: a producer at the offered load "
        f"(linger.ms 0, acks=all, 1 KiB, {cs.partitions} partitions RF 3) and an assigned consumer (default fetch "
        f"wait 500 ms) in one process for {cs.e2e_seconds:.0f} s; latency = receive time - send time stamped in the "
        "record (one monotonic clock); the first second is dropped. If the Python producer cannot keep up with the "
        "offered load it sends as fast as it can (latency still counts from the actual send).",
    ]


# ---------------------------------------------------------------------------------------
# 4 + 5 + 7. failover, rolling restart, 1,000 partitions


class TimedProducer:
    """workload.AckingProducer (idempotent, acks=all, steady rate, every delivery report
    kept) that also keeps librdkafka's per-message latency (produce() to report)."""

    def __init__(self, bootstrap: str, topic: str, partitions: list[int], rate: float, log_path) -> None:
        import workload

        outer = self

        class P(workload.AckingProducer):
            def _on_delivery(self, err, msg) -> None:
                super()._on_delivery(err, msg)
                lat = msg.latency() if err is None else None
                if lat is not None:
                    with self._lock:
                        outer.latencies.append((time.monotonic(), lat))

        self.latencies: list[tuple[float, float]] = []
        self.p = P(bootstrap, topic, partitions, name="bench", rate=rate, log_path=log_path)

    def latency_pct(self, since: float, until: float, pct: float) -> float | None:
        with self.p._lock:
            v = sorted(lat for at, lat in self.latencies if since <= at <= until)
        if not v:
            return None
        return v[min(len(v) - 1, max(0, int(pct * len(v) + 0.5) - 1))] * 1e3

    def failures(self, since: float, until: float) -> int:
        with self.p._lock:
            return sum(1 for f in self.p.failures if since <= f.at <= until)


C4_GAP = "longest gap between acks on the killed leader's partition, ending after the kill: ms"
C4_FIRST = "acks on that partition flowing again (end of that gap) after the kill: ms"
C4_LEADER = "Metadata names a new leader after the kill: ms"
C4_LOST = "acked messages lost (full read afterwards)"
C4_DUP = "messages duplicated in the log (idempotent producer)"
C4_FAILED = "failed sends (after retries)"
C4_REJOIN = "killed broker restarted: ready, then back in every ISR: s"

C5_DURATION = "whole roll (3 × SIGTERM, restart, ready, caught up): s"
C5_FAILED = "failed sends after retries during the roll"
C5_P99 = "p99 produce→ack latency during the roll: ms"
C5_P50 = "p50 produce→ack latency during the roll: ms"
C5_GAP = "longest ack gap on any partition during the roll: ms"
C5_LOST = "acked messages lost (full read afterwards)"

C7_CREATE = "create 1,000 partitions RF 3 until all have a leader and full ISR: s"
C7_IDLE = "RSS per broker with the 1,000 partitions, before producing: MiB"
C7_MB = "produce 1 KiB acks=all over the 1,000 partitions, ProducerPerformance: MB/s"
C7_MSGS = "produce 1 KiB acks=all over the 1,000 partitions, ProducerPerformance: msgs/s"
C7_RSS = "RSS per broker after producing: MiB"


def c4_rows(ctx: Ctx) -> list[Row]:
    return [Row(C4_GAP, "ms", "lower"), Row(C4_FIRST, "ms", "lower"), Row(C4_LEADER, "ms", "lower"),
            Row(C4_LOST, "msgs", "lower"), Row(C4_DUP, "msgs", "lower"), Row(C4_FAILED, "msgs", "lower"),
            Row(C4_REJOIN, "s", "lower")]


def c5_rows(ctx: Ctx) -> list[Row]:
    return [Row(C5_FAILED, "msgs", "lower"), Row(C5_P50, "ms", "lower"),
            Row(C5_P99, "ms", "lower", plot="rolling restart", pct="p99"),
            Row(C5_GAP, "ms", "lower"), Row(C5_DURATION, "s", "lower"), Row(C5_LOST, "msgs", "lower")]


def c7_rows(ctx: Ctx) -> list[Row]:
    return [Row(C7_CREATE, "s", "lower"), Row(C7_IDLE, "MiB", "lower"),
            Row(C7_MB, "MB/s", "higher", plot="throughput", capacity=True), Row(C7_MSGS, "msgs/s", "higher"),
            Row(C7_RSS, "MiB", "lower")]


def _phase(table: Table, running: Running, metrics: list[str], fn: Callable[[], None]) -> bool:
    """Run a phase that adds its own figures; a failure is recorded against `metrics`."""
    try:
        fn()
        return True
    except Exception as e:  # noqa: BLE001 - the harness raises AssertionError subclasses
        reason = f"{type(e).__name__}: {str(e)[:600]}"
        missing = [m for m in metrics if not table.row(m).values.get(running.target.label)]
        table.error(running.target, missing or metrics, reason)
        return False


def c4_measure(ctx: Ctx, table: Table, running: Running, run: int) -> None:
    from cluster import wait_until  # noqa: F401 - harness path set up by cluster3

    cs, c, t = sizes(ctx), running.cluster, running.target
    roll, scale = ctx.companions["5"], ctx.companions["7"]
    topic = new_topic(ctx, running, "c4-failover", cs.partitions)
    parts = list(range(cs.partitions))
    tp = TimedProducer(running.bootstrap, topic, parts, cs.fault_rate, ctx.log.parent / f"{running.workdir.name}-producer.log")
    p = tp.p
    timeline = {"target": t.label, "events": [], "acks": p.acks}
    ctx.timelines.append(timeline)
    p.start()
    state: dict = {}

    def failover() -> None:
        p.wait_acked(int(cs.fault_rate * cs.steady_s), timeout_s=60)
        victim = c.leader_of(topic, 0)
        t_kill = c.kill9(victim)
        log(running, f"kill -9 of broker {victim}, the leader of {topic}-0")
        timeline["t0"] = t_kill - cs.steady_s
        timeline["events"].append((t_kill, f"kill -9 broker {victim}"))
        state["failover_from"] = t_kill - cs.steady_s
        c.wait_leader(topic, 0, not_in=[victim], timeout_s=OUTAGE_S)
        table.add(t, C4_LEADER, (time.monotonic() - t_kill) * 1e3)  # polled every 0.1 s
        first = p.first_ack_after(t_kill, 0, timeout_s=OUTAGE_S)
        p.wait_acked(50, partition=0, since=first.at, timeout_s=OUTAGE_S)
        gap, end = outage_gap(p, 0, t_kill, time.monotonic())
        table.add(t, C4_GAP, gap * 1e3)
        table.add(t, C4_FIRST, (end - t_kill) * 1e3)
        log(running, f"partition 0: longest ack gap {gap * 1e3:.0f} ms, acks flowing again {(end - t_kill) * 1e3:.0f} ms "
                     "after the kill")
        time.sleep(cs.steady_s / 2)
        t_restart = time.monotonic()
        timeline["events"].append((t_restart, f"restart broker {victim}"))
        c.restart(victim)
        c.wait_fully_replicated([topic], timeout_s=120)
        table.add(t, C4_REJOIN, time.monotonic() - t_restart)
        log(running, f"broker {victim} restarted and back in every ISR after {time.monotonic() - t_restart:.1f} s")
        p.wait_acked(int(cs.fault_rate * cs.steady_s / 2), since=time.monotonic(), timeout_s=60)
        state["failover_until"] = time.monotonic()
        table.add(t, C4_FAILED, tp.failures(0, state["failover_until"]))

    def rolling() -> None:
        t0 = time.monotonic()
        state["roll_from"] = t0
        for node in sorted(c.nodes):
            timeline["events"].append((time.monotonic(), f"SIGTERM broker {node}"))
            c.terminate(node, timeout_s=60)
            c.restart(node)
            c.wait_fully_replicated([topic], timeout_s=120)
            log(running, f"rolling restart: broker {node} restarted and caught up")
        t1 = state["roll_until"] = time.monotonic()
        timeline["events"].append((t1, "roll done"))
        roll.add(t, C5_DURATION, t1 - t0)
        roll.add(t, C5_FAILED, tp.failures(t0, t1))
        roll.add(t, C5_GAP, max(p.max_ack_gap(x, t0, t1) for x in parts) * 1e3)
        for metric, pct in ((C5_P50, 0.5), (C5_P99, 0.99)):
            v = tp.latency_pct(t0, t1, pct)
            if v is not None:
                roll.add(t, metric, v)
        p.wait_acked(int(cs.fault_rate * cs.steady_s), since=time.monotonic(), timeout_s=60)

    ok = _phase(table, running, [r.metric for r in table.rows], failover)
    if ok:
        _phase(roll, running, [r.metric for r in roll.rows], rolling)
    else:
        roll.error(t, [r.metric for r in roll.rows], "not run: the failover phase failed")

    def check() -> None:
        import workload

        unreported = p.stop(flush_timeout_s=60)
        timeline["t1"] = time.monotonic()
        full = workload.read_all(running.bootstrap, topic, parts, timeout_s=120,
                                 log_path=ctx.log.parent / f"{running.workdir.name}-read.log")
        log(running, f"full read: {len(full.reads)} messages, {len(p.acks)} acked")
        seen: dict[str, int] = {}
        for r in full.reads:
            seen[r.payload] = seen.get(r.payload, 0) + 1
        lost = [a for a in p.acks if a.payload not in seen]
        dups = sum(n - 1 for n in seen.values() if n > 1)
        split = state.get("failover_until", float("inf"))
        table.add(t, C4_LOST, sum(1 for a in lost if a.at <= split))
        table.add(t, C4_DUP, dups)
        if "roll_from" in state:
            roll.add(t, C5_LOST, sum(1 for a in lost if a.at > split))
        if lost:
            ex = ", ".join(f"{a.partition}@{a.offset} {a.payload}" for a in lost[:5])
            table.warn(t, [f"{len(lost)} acknowledged messages missing from the full read, e.g. {ex}"])
        if unreported:
            table.warn(t, [f"{unreported} messages still without a delivery report after the 60 s flush"])
        if full.notes:
            table.warn(t, [f"full read: {n}" for n in full.notes])
        table.warn(t, [p.summary()])

    _phase(table, running, [C4_LOST, C4_DUP], check)
    if "roll_from" in state and not roll.row(C5_LOST).values.get(t.label):
        roll.error(t, [C5_LOST], "the full read failed (see scenario 4)")

    def scale_phase() -> None:
        t0 = time.monotonic()
        # Kafka's CreateTopics answers once the controller has the partitions; both are
        # timed until every broker's Metadata shows a leader and the full ISR for all.
        cluster3.create_topic(running, "c7-scale", cs.scale_partitions, timeout_s=300)
        scale.add(t, C7_CREATE, time.monotonic() - t0)
        log(running, f"{cs.scale_partitions} partitions created in {time.monotonic() - t0:.1f} s")
        time.sleep(2)
        scale.add(t, C7_IDLE, _per_broker_mib(running.rss_per_node_kib()))
        r = step(scale, running, [C7_MB, C7_MSGS], lambda: _pp(loads.producer_performance(
            running.bootstrap, "c7-scale", cs.scale_records, 1024, "all", log=ctx.log)))
        if r is not None:
            scale.warn(t, r.get("warnings", []))
        scale.add(t, C7_RSS, _per_broker_mib(running.rss_per_node_kib()))

    _phase(scale, running, [r.metric for r in scale.rows], scale_phase)


def outage_gap(p, partition: int, t_kill: float, until: float) -> tuple[float, float]:
    """(the longest time between consecutive acks of `partition` among the gaps
    that end after the kill, when it ended): the outage the kill caused. Gaps
    from up to 0.5 s before count, since the last ack before the kill starts
    the outage; a gap that ended before the kill (a client or GC pause) does
    not, or "flowing again after the kill" would come out negative."""
    since = t_kill - 0.5
    with p._lock:
        times = sorted(a.at for a in p.acks if a.partition == partition and since <= a.at <= until)
    points = [since, *times, until]
    gaps = [(b - a, b) for a, b in zip(points, points[1:]) if b > t_kill]
    return max(gaps, default=(0.0, t_kill))


def _pp(r: dict) -> dict:
    return {**r, C7_MB: r["mb_per_s"], C7_MSGS: r["msgs_per_s"]}


def c4_notes(ctx: Ctx) -> list[str]:
    cs = sizes(ctx)
    return [
        f"Both brokers with their defaults (Kafka: broker.session.timeout.ms 9 s, heartbeat 2 s; Skiff: its own), "
        f"3 brokers, RF 3, min.insync.replicas 2. Load: one idempotent acks=all librdkafka producer (the cluster "
        f"tests' `workload.AckingProducer`: linger.ms 5, request.timeout.ms 5 s, retries for 120 s, metadata refresh "
        f"2 s, small records) at {cs.fault_rate:,.0f} msgs/s round-robin over {cs.partitions} partitions. After "
        f"{cs.steady_s:.0f} s: kill -9 of partition 0's leader. Gap = longest time between consecutive acks of "
        "partition 0 from 0.5 s before the kill until 50 acks after the first new one (as "
        "broker/tests/cluster/test_failover.py). Then the killed broker is restarted and waited for (back in every "
        "ISR; Skiff also /v1/status under_replicated 0 on all).",
        "acks=all waits for every ISR member: until the dead broker is dropped from the ISR (Kafka: after its "
        "session timeout fences it), the acks of every partition it followed stop too, not only partition 0's "
        "(see the timeline plot).",
        "Lost: acknowledged messages missing from a full read of every partition (offset 0 to the high watermark) "
        "after the producer stopped at the end of scenario 5 (same topic, same producer); counted here for acks "
        "before the roll began, in scenario 5 for the rest. Must be 0.",
    ]


def c5_notes(ctx: Ctx) -> list[str]:
    return [
        "Same start, topic and producer as scenario 4, right after it. Each broker in turn (0, 1, 2): SIGTERM "
        "(controlled shutdown), wait for exit, start again on the same data directory, wait until ready, then until "
        "caught up (Kafka: Metadata of every broker shows the full ISR for every partition; Skiff: the same and "
        "/v1/status under_replicated 0 on all three) before the next. Failed sends: delivery reports with an error "
        "(after the client's retries, 120 s) during the roll. Latency: librdkafka's produce()→delivery report of "
        "each message acked during the roll.",
    ]


def c7_notes(ctx: Ctx) -> list[str]:
    cs = sizes(ctx)
    return [
        f"Same start as 4 and 5, afterwards. One topic of {cs.scale_partitions:,} partitions, RF 3 (3,000 replicas on "
        "3 brokers): create time = CreateTopics until the Metadata of every broker shows a leader and the full ISR "
        f"for every partition. Then {cs.scale_records:,} × 1 KiB acks=all with ProducerPerformance (sticky "
        "partitioner: batches spread over the partitions). Segment size: both with log.segment.bytes 1 GiB (both "
        "defaults); Skiff sizes the active segment file with set_len (sparse, no blocks written), Kafka preallocates "
        "only its index files (also sparse), so neither pays for preallocation in disk writes.",
    ]


# ---------------------------------------------------------------------------------------
# Plots: acks per second over time around the faults


def timeline_plots(timelines: list[dict], out_dir) -> list[tuple[str, object]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    if not timelines:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(timelines), 1, figsize=(11, 2.8 * len(timelines)), squeeze=False)
    colors = {"Kafka": "#4c72b0", "Skiff": "#dd8452"}
    for ax, tl in zip(axes[:, 0], timelines):
        t0 = tl.get("t0")
        times = sorted(a.at for a in tl["acks"])
        if t0 is None or not times:
            ax.set_title(f"{tl['target']}: no data")
            continue
        t1 = tl.get("t1", times[-1])
        bin_s = 0.25
        n = int((t1 - t0) / bin_s) + 1
        counts = [0] * n
        for x in times:
            i = int((x - t0) / bin_s)
            if 0 <= i < n:
                counts[i] += 1
        ax.plot([i * bin_s for i in range(n)], [c / bin_s for c in counts], color=colors.get(tl["target"]),
                lw=1, label=f"{tl['target']}: acks/s (0.25 s bins)")
        for i, (at, what) in enumerate(tl["events"]):
            ax.axvline(at - t0, color="red" if "kill" in what else "grey", lw=0.8, ls="--")
            ax.annotate(what, (at - t0, 0.95 - 0.12 * (i % 4)), xycoords=("data", "axes fraction"), fontsize=7,
                        ha="left", va="top")
        ax.set_ylabel("acks/s")
        ax.set_xlabel("s since the load started")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        ax.set_title(f"{tl['target']}: failover (kill -9 of a leader), then rolling restart", fontsize=9)
    fig.tight_layout()
    path = out_dir / "faults-timeline.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [("Acks per second during failover and rolling restart (scenarios 4 and 5)", path)]


SCENARIOS = [
    Scenario("2", "3 brokers, RF 3, min.insync.replicas 2, acks=all: throughput and produce latency",
             lambda ctx: [KAFKA3, SKIFF3_FSYNC, SKIFF3_MEMORY], c2_rows, c2_measure, c2_notes,
             companions=lambda ctx: [Table("3", "3 brokers, RF 3: end-to-end latency at the offered load",
                                           [KAFKA3, SKIFF3_FSYNC, SKIFF3_MEMORY], c3_rows(ctx), c3_notes(ctx))]),
    Scenario("4", "3 brokers: failover (kill -9 of a partition leader under acks=all load)",
             lambda ctx: [KAFKA3, SKIFF3], c4_rows, c4_measure, c4_notes,
             companions=lambda ctx: [
                 Table("5", "3 brokers: rolling restart under acks=all load", [KAFKA3, SKIFF3], c5_rows(ctx),
                       c5_notes(ctx)),
                 Table("7", "3 brokers: 1,000 partitions", [KAFKA3, SKIFF3], c7_rows(ctx), c7_notes(ctx))]),
]
GROUPS = {"3": "2", "5": "4", "7": "4"}  # a companion table's key -> the scenario that measures it
