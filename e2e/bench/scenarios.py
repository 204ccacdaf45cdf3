"""The scenarios: which brokers, which loads, which figures.

A scenario declares its targets (columns) and rows, and measures one started broker per
call of `measure`. Starting and
stopping brokers, repetition and failure handling belong to the orchestrator (bench.py).
Every load step is independent: one failing is recorded in its rows and the next runs.

The 3-broker scenarios of the issue (2, 3, 4, 5, 7 and the cluster rows of 6) are in
cluster_scenarios.py; the single-node acks=all and end-to-end scenarios here are 2a and 3a.
A scenario may fill companion tables (`companions`) from the same broker starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import loads
from brokers import Running, Target
from results import Row, Table

KAFKA = Target("Kafka", "kafka")
SKIFF = Target("Skiff", "skiff")
SKIFF_FSYNC = Target("Skiff (fsync)", "skiff", (("skiff.ack.durability", "fsync"),))
SKIFF_MEMORY = Target("Skiff (memory)", "skiff", (("skiff.ack.durability", "memory"),))
# Kafka made as durable as Skiff's default: fsync of every appended batch before it counts.
KAFKA_FLUSH = Target("Kafka (flush every message)", "kafka", (("log.flush.interval.messages", "1"),))

SIZES = {100: "100 B", 1024: "1 KiB"}


@dataclass(frozen=True)
class Sizes:
    """How much load each step offers; `quick` and `full` presets below."""

    pp_records: dict[int, int]  # ProducerPerformance, per record size, scenario 1
    rd_records: dict[int, int]  # librdkafka producer, per record size, scenario 1
    warmup_records: int  # 1 KiB records produced and consumed after each start, not measured
    max_records: int  # scenario 2: unthrottled acks=all, per target
    fixed_seconds: float  # scenario 2: duration at the fixed offered load
    e2e_messages: int  # scenario 3: EndToEndLatency round trips
    e2e_rate: float  # scenario 3: librdkafka end-to-end, msgs/s
    e2e_seconds: float


QUICK = Sizes({100: 1_000_000, 1024: 200_000}, {100: 1_000_000, 1024: 300_000}, 50_000,
              200_000, 10, 2_000, 1000, 10)
# Full: three runs of loads a few times the quick ones (about 40 min on 2 cores); the
# spread over the runs, not the length of one, is what shows how noisy a figure is.
FULL = Sizes({100: 2_000_000, 1024: 400_000}, {100: 2_000_000, 1024: 600_000}, 100_000,
             200_000, 15, 3_000, 1000, 15)


@dataclass
class Ctx:
    """What every scenario may read, and the footprint table they all feed."""

    sizes: Sizes
    partitions: int
    log: Path
    footprint: Table
    offered_rate: float | None = None  # scenario 2a, msgs/s: --rate, else set by Kafka's first run
    kafka_flush_variant: bool = False
    cluster_rate: float | None = None  # scenarios 2 and 3 (3 brokers): set by Kafka's first run
    companions: dict[str, Table] = field(default_factory=dict)  # by key, filled by bench.run_scenario
    timelines: list[dict] = field(default_factory=list)  # acks over time around faults (scenarios 4, 5)


@dataclass
class Scenario:
    key: str
    title: str
    targets: Callable[[Ctx], list[Target]]
    rows: Callable[[Ctx], list[Row]]
    measure: Callable[[Ctx, Table, Running, int], None]
    notes: Callable[[Ctx], list[str]] = lambda ctx: []
    companions: Callable[[Ctx], list[Table]] = lambda ctx: []

    def table(self, ctx: Ctx) -> Table:
        return Table(self.key, self.title, self.targets(ctx), self.rows(ctx), self.notes(ctx))


def step(table: Table, running: Running, metrics: list[str], fn: Callable[[], dict[str, float]]) -> dict | None:
    """Run one load step; its figures go into `metrics`, a failure is recorded there."""
    running.check_alive()  # a dead broker aborts the run instead of timing out every step
    try:
        with loads.watching(running.gone):
            values = fn()
    except (loads.LoadError, OSError, ValueError) as e:
        running.check_alive()
        table.error(running.target, metrics, str(e))
        return None
    for m in metrics:
        if m in values:
            table.add(running.target, m, values[m])
    return values


def new_topic(ctx: Ctx, running: Running, name: str) -> str:
    running.check_alive()
    with loads.watching(running.gone):
        loads.create_topic(running.bootstrap, name, ctx.partitions, log=ctx.log)
    return name


def warm_up(ctx: Ctx, running: Running) -> None:
    """Same unmeasured traffic for every broker after start (the JVM's JIT needs it)."""
    if ctx.sizes.warmup_records <= 0:
        return
    running.check_alive()
    topic = "warmup"  # 3 brokers: RF 3, so replication is warmed up too
    with loads.watching(running.gone):
        loads.create_topic(running.bootstrap, topic, ctx.partitions, running.target.nodes, log=ctx.log)
    with loads.watching(running.gone):
        loads.rdkafka("produce", running.bootstrap, topic, log=ctx.log, count=ctx.sizes.warmup_records,
                      size=1024, acks="1")
        loads.rdkafka("consume", running.bootstrap, topic, log=ctx.log, count=ctx.sizes.warmup_records)
    if running.target.nodes == 3:
        # A 3-broker run measures acks=all with ProducerPerformance: warm that path on
        # every broker (one partition led by each), twice the records, unmeasured. A first
        # quick run showed Kafka's three fresh JVMs still ramping up (JIT) 40 s into the
        # measured step after the acks=1 warm-up alone.
        topic = "warmup-acks-all"
        with loads.watching(running.gone):
            loads.create_topic(running.bootstrap, topic, 3, 3, log=ctx.log)
            loads.producer_performance(running.bootstrap, topic, 2 * ctx.sizes.warmup_records, 1024, "all",
                                       log=ctx.log)


# ---------------------------------------------------------------------------------------
# 1. throughput, acks=1


def s1_rows(ctx: Ctx) -> list[Row]:
    rows = []
    for size, label in SIZES.items():
        for gen in ("ProducerPerformance", "librdkafka"):
            rows.append(Row(f"produce {label}, {gen}: MB/s", "MB/s", "higher", limit="loopback_tcp", plot="throughput",
                            capacity=True))
            rows.append(Row(f"produce {label}, {gen}: msgs/s", "msgs/s", "higher", capacity=True))
    for gen in ("ConsumerPerformance", "librdkafka"):
        rows.append(Row(f"consume 1 KiB, {gen}: MB/s", "MB/s", "higher", limit="loopback_tcp", plot="throughput",
                        capacity=True))
    return rows


def throughput(table: Table, running: Running, prefix: str, load: Callable[[], dict]) -> dict | None:
    """A load step whose MB/s (and msgs/s, where the table has that row) go to `prefix` rows."""
    metrics = [m for m in (f"{prefix}: MB/s", f"{prefix}: msgs/s") if any(r.metric == m for r in table.rows)]

    def measured() -> dict:
        r = load()
        return {**r, f"{prefix}: MB/s": r["mb_per_s"], f"{prefix}: msgs/s": r.get("msgs_per_s", 0.0)}

    r = step(table, running, metrics, measured)
    if r is not None:
        table.warn(running.target, r.get("warnings", []))
    return r


def s1_measure(ctx: Ctx, table: Table, running: Running, run: int) -> None:
    b, s = running.bootstrap, ctx.sizes
    consumed = None  # the 1 KiB ProducerPerformance topic, once written
    for size, label in SIZES.items():
        topic = new_topic(ctx, running, f"s1-pp-{size}")
        cpu0 = running.cpu_seconds()
        r = throughput(table, running, f"produce {label}, ProducerPerformance",
                       lambda: loads.producer_performance(b, topic, s.pp_records[size], size, "1", log=ctx.log))
        if r is not None and size == 1024:
            consumed = topic
            gb = r["records"] * size / 1e9
            ctx.footprint.add(_kind_target(running), FOOT_CPU, (running.cpu_seconds() - cpu0) / gb)
        topic = new_topic(ctx, running, f"s1-rd-{size}")
        throughput(table, running, f"produce {label}, librdkafka",
                   lambda: loads.rdkafka("produce", b, topic, log=ctx.log, count=s.rd_records[size], size=size, acks="1"))
    n = s.pp_records[1024]
    consumers = {
        "ConsumerPerformance": lambda: loads.consumer_performance(b, consumed, n, log=ctx.log),
        "librdkafka": lambda: loads.rdkafka("consume", b, consumed, log=ctx.log, count=n),
    }
    for gen, load in consumers.items():
        prefix = f"consume 1 KiB, {gen}"
        if consumed is None:
            table.error(running.target, [f"{prefix}: MB/s"], "nothing to consume: the 1 KiB ProducerPerformance step failed")
        else:
            throughput(table, running, prefix, load)
    running.check_alive()
    ctx.footprint.add(_kind_target(running), FOOT_PEAK_RSS, running.hwm_kib() / 1024)


def s1_notes(ctx: Ctx) -> list[str]:
    s = ctx.sizes
    return [
        f"One topic per step, {ctx.partitions} partition(s), RF 1, acks=1, no compression. Records: "
        f"ProducerPerformance {s.pp_records[100]:,} × 100 B and {s.pp_records[1024]:,} × 1 KiB; "
        f"librdkafka {s.rd_records[100]:,} × 100 B and {s.rd_records[1024]:,} × 1 KiB. "
        "Each client with its own default settings (Java: linger.ms 0, batch.size 16 KiB; librdkafka: linger.ms 5).",
        "Consume reads the 1 KiB ProducerPerformance topic from the beginning: ConsumerPerformance with a fresh "
        "group (rate over its fetch time, without the group join), librdkafka by assignment without a group, "
        "with fetch.queue.backoff.ms 10 instead of 1,000 (librdkafka pauses fetching that long whenever its 64 MiB "
        "local queue fills, which only a broker faster than the Python loop triggers; one pause would decide the figure).",
        "MB = 10^6 bytes of record values. Load generators, broker and the rest of the machine share the same cores: "
        "on 2 cores the Python librdkafka loop and the Java producer are themselves a bottleneck, for both brokers alike.",
    ]


# ---------------------------------------------------------------------------------------
# 2. acks=all: throughput and produce latency at a fixed offered load


LAT_PCTS = (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))


def s2_targets(ctx: Ctx) -> list[Target]:
    return [KAFKA] + ([KAFKA_FLUSH] if ctx.kafka_flush_variant else []) + [SKIFF_FSYNC, SKIFF_MEMORY]


def s2_rows(ctx: Ctx) -> list[Row]:
    disk = {KAFKA.label: "disk_cached", KAFKA_FLUSH.label: "disk_fdatasync", SKIFF_FSYNC.label: "disk_fdatasync",
            SKIFF_MEMORY.label: "disk_cached"}
    rows = [
        Row("max produce 1 KiB acks=all, ProducerPerformance: MB/s", "MB/s", "higher", limit=disk, plot="throughput",
            capacity=True),
        Row("max produce 1 KiB acks=all, ProducerPerformance: msgs/s", "msgs/s", "higher", capacity=True),
        Row("at the offered load, ProducerPerformance: achieved msgs/s", "msgs/s", "higher"),
    ]
    for pct, _ in LAT_PCTS:
        rows.append(Row(f"at the offered load, ProducerPerformance: {pct} ms", "ms", "lower", plot="ProducerPerformance", pct=pct))
    rows.append(Row("at the offered load, librdkafka: achieved msgs/s", "msgs/s", "higher"))
    for pct, _ in LAT_PCTS:
        rows.append(Row(f"at the offered load, librdkafka: {pct} ms", "ms", "lower", plot="librdkafka", pct=pct))
    return rows


def s2_measure(ctx: Ctx, table: Table, running: Running, run: int) -> None:
    b, s, rate = running.bootstrap, ctx.sizes, ctx.offered_rate
    topic = new_topic(ctx, running, "s2-max")
    r = throughput(table, running, "max produce 1 KiB acks=all, ProducerPerformance",
                   lambda: loads.producer_performance(b, topic, s.max_records, 1024, "all", log=ctx.log))
    if rate is None and running.target == table.baseline and r is not None:
        # The first run starts with Kafka: its max fixes the load offered to everyone.
        rate = ctx.offered_rate = max(100.0, round(r["msgs_per_s"] * 0.5, -2))
        table.notes.insert(0, f"Offered load: **{rate:,.0f} msgs/s** of 1 KiB = 50 % of Kafka's unthrottled acks=all "
                              f"rate in the first run ({r['msgs_per_s']:,.0f} msgs/s), the same for every target and run.")
    fixed = [f"at the offered load, {g}: {m}" for g in ("ProducerPerformance", "librdkafka")
             for m in ["achieved msgs/s"] + [f"{p} ms" for p, _ in LAT_PCTS]]
    if rate is None:
        table.error(running.target, fixed, "no offered load: Kafka's max in the first run failed (or give --rate)")
        return

    def at_offered_load(generator: str, load: Callable[[str], dict]) -> None:
        prefix = f"at the offered load, {generator}"
        topic = new_topic(ctx, running, f"s2-fixed-{generator.lower()}")

        def measured() -> dict:
            r = load(topic)
            return {**r, f"{prefix}: achieved msgs/s": r["msgs_per_s"],
                    **{f"{prefix}: {pct} ms": r[key] for pct, key in LAT_PCTS}}

        r = step(table, running, [m for m in fixed if m.startswith(prefix)], measured)
        if r is not None:
            table.warn(running.target, r.get("warnings", []))

    n = int(rate * s.fixed_seconds)
    at_offered_load("ProducerPerformance", lambda topic: loads.producer_performance(
        b, topic, n, 1024, "all", throughput=rate, log=ctx.log))
    at_offered_load("librdkafka", lambda topic: loads.rdkafka(
        "produce", b, topic, log=ctx.log, count=n, size=1024, acks="all", rate=rate, linger_ms=0))


def s2_notes(ctx: Ctx) -> list[str]:
    s = ctx.sizes
    given = [f"Offered load: **{ctx.offered_rate:,.0f} msgs/s** of 1 KiB (given with --rate)."] if ctx.offered_rate else []
    return given + [
        "**Kafka does not fsync by default**: with acks=all it answers once the record is in the page cache of "
        "every in-sync replica (here: one), and flushes later. Skiff (fsync), its default, answers acks=all only "
        "after fdatasync, with group commit; Skiff (memory) answers like Kafka."
        + (" Kafka (flush every message) sets log.flush.interval.messages=1, the closest Kafka setting to Skiff's default."
           if ctx.kafka_flush_variant else ""),
        f"Max: {s.max_records:,} records unthrottled. At the offered load: {s.fixed_seconds:.0f} s per generator. "
        "ProducerPerformance reports latency in whole milliseconds over every record, including those sent while "
        "its own JVM warms up (no warm-up option is used: 3.9 has none), which inflates its tail for both brokers alike; "
        "librdkafka in microseconds (produce() call to delivery report, linger.ms=0), leaving out the first second.",
    ]


# ---------------------------------------------------------------------------------------
# 3. end-to-end latency


def s3_rows(ctx: Ctx) -> list[Row]:
    rows = [Row("EndToEndLatency: mean ms", "ms", "lower")]
    for pct, _ in LAT_PCTS:
        rows.append(Row(f"EndToEndLatency: {pct} ms", "ms", "lower", plot="EndToEndLatency", pct=pct))
    for pct, _ in LAT_PCTS:
        rows.append(Row(f"librdkafka at {ctx.sizes.e2e_rate:,.0f} msgs/s: {pct} ms", "ms", "lower", plot="librdkafka", pct=pct))
    return rows


def s3_measure(ctx: Ctx, table: Table, running: Running, run: int) -> None:
    b, s = running.bootstrap, ctx.sizes
    metrics = ["EndToEndLatency: mean ms"] + [f"EndToEndLatency: {p} ms" for p, _ in LAT_PCTS]
    topic = new_topic(ctx, running, "s3-java")

    def java() -> dict:
        r = loads.end_to_end_latency(b, topic, s.e2e_messages, "all", 1024, log=ctx.log)
        return {**r, metrics[0]: r["mean_ms"], **{f"EndToEndLatency: {p} ms": r[k] for p, k in LAT_PCTS}}

    r = step(table, running, metrics, java)
    if r is not None:
        table.warn(running.target, r["warnings"])
    pre = f"librdkafka at {s.e2e_rate:,.0f} msgs/s"
    topic = new_topic(ctx, running, "s3-rd")

    def rd() -> dict:
        r = loads.rdkafka("e2e", b, topic, log=ctx.log, rate=s.e2e_rate, seconds=s.e2e_seconds, size=1024, acks="all",
                          linger_ms=0)
        return {**r, **{f"{pre}: {p} ms": r[k] for p, k in LAT_PCTS}}

    r = step(table, running, [f"{pre}: {p} ms" for p, _ in LAT_PCTS], rd)
    if r is not None:
        table.warn(running.target, r.get("warnings", []))


def s3_notes(ctx: Ctx) -> list[str]:
    s = ctx.sizes
    return [
        f"1 KiB records, acks=all. EndToEndLatency: {s.e2e_messages:,} round trips, one record in flight (send, wait, "
        "then poll until it arrives), percentiles in whole milliseconds as the tool prints them (truncated: 0 means "
        "under 1 ms). "
        f"librdkafka: a producer at a fixed {s.e2e_rate:,.0f} msgs/s (linger.ms=0) and an assigned consumer in one "
        f"process for {s.e2e_seconds:.0f} s; latency = receive time - send time in the record; the first second is dropped.",
        "Both consumers keep their default fetch wait (500 ms): a broker that does not answer a waiting fetch as soon "
        "as data arrives shows it here.",
    ]


# ---------------------------------------------------------------------------------------
# 6. footprint (filled by every broker start and by scenario 1)

FOOT_START = "start to serving: ms"
FOOT_IDLE_RSS = "idle RSS after start: MiB"
FOOT_PEAK_RSS = "peak RSS during scenario 1 (VmHWM): MiB"
FOOT_CPU = "broker CPU per GB produced (1 KiB, acks=1, ProducerPerformance): s"
FOOT_STOP = "stop (SIGTERM to exit): ms"
FOOT_TARGETS = [KAFKA, SKIFF]


def footprint_table(idle_settle_s: float) -> Table:
    import cluster_scenarios

    return Table("6", "Footprint", FOOT_TARGETS, [
        Row(FOOT_START, "ms", "lower", plot="footprint"),
        Row(FOOT_IDLE_RSS, "MiB", "lower", plot="footprint"),
        Row(FOOT_PEAK_RSS, "MiB", "lower"),
        Row(FOOT_CPU, "s", "lower"),
        Row(FOOT_STOP, "ms", "lower"),
        *cluster_scenarios.FOOT_ROWS,
    ], notes=[
        "Start to serving: process start to the first Metadata response listing a broker, polled every 5 ms. "
        "Skiff: from fork/exec. Kafka: from the broker JVM's start time in /proc (10 ms ticks); the separate "
        "`kafka-storage format` JVM that must run first on a fresh data directory is not counted.",
        f"Idle RSS: VmRSS {idle_settle_s:g} s after serving, no client connected. Kafka runs with the heap "
        "kafka-server-start.sh gives it (-Xmx1G -Xms1G, G1). Peak RSS: VmHWM at the end of scenario 1.",
        "Values over every broker start of the run (all scenarios), Skiff in both durability modes.",
        *cluster_scenarios.FOOT_NOTES,
    ])


def _kind_target(running: Running) -> Target:
    return KAFKA if running.target.kind == "kafka" else SKIFF


def record_start(ctx: Ctx, running: Running) -> None:
    if running.target.nodes != 1:  # per broker process: the cluster rows
        import cluster_scenarios

        cluster_scenarios.record_cluster_start(ctx, running)
        return
    t = _kind_target(running)
    ctx.footprint.add(t, FOOT_START, running.start_to_serving_ms)
    ctx.footprint.add(t, FOOT_IDLE_RSS, running.idle_rss_kib / 1024)


def record_stop(ctx: Ctx, running: Running) -> None:
    if running.stop_ms is not None and running.target.nodes == 1:
        ctx.footprint.add(_kind_target(running), FOOT_STOP, running.stop_ms)


SCENARIOS = [
    Scenario("1", "1 node, RF 1, acks=1: throughput", lambda ctx: [KAFKA, SKIFF], s1_rows, s1_measure, s1_notes),
    Scenario("2a", "1 node, acks=all: throughput and produce latency", s2_targets, s2_rows, s2_measure, s2_notes),
    Scenario("3a", "1 node, end-to-end latency", lambda ctx: [KAFKA, SKIFF_FSYNC, SKIFF_MEMORY], s3_rows, s3_measure,
             s3_notes),
]

