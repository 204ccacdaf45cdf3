#!/usr/bin/env python3
"""Skiff and Apache Kafka side by side on this machine, in the same run.

Measures the machine's physical limits (disk with and without fdatasync, loopback TCP,
memcpy), then runs each scenario against a freshly started Apache Kafka and Skiff
(new data directory per run, the same load generators against both): single node
(1; 2a and 3a in full runs) and 3 brokers, RF 3 (2 and 3, 4 failover, 5 rolling restart,
7 with 1,000 partitions, footprint rows in 6; see cluster_scenarios.py), and writes the
tables, plots and the machine description into BENCHMARKS.md (between its
`<!-- bench:begin -->` markers) and the tables to stdout.

  make bench          python e2e/bench/bench.py --runs 3      median of 3 runs, min–max
  make bench-quick    python e2e/bench/bench.py --quick       1 run each, small loads
  make bench-kafka4   KAFKA_VERSION=4.1.1 ... --runs 3        against Kafka 4.x, its own
                      section (<!-- bench-kafka-4.1.1:begin -->) and plots directory

This is a program, not a test: it never asserts on time. It prints which of Skiff's
targets the medians meet. Every broker it starts is stopped before it exits, also on
failure or Ctrl-C. Needs: the release broker binary, Java and Maven (for Kafka via
e2e/tools/kafka.sh), gcc, dd, and the venv of e2e/bench/install.sh (confluent-kafka,
matplotlib) to run in.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import brokers  # noqa: E402
import cluster_scenarios  # noqa: E402
import limits  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
from results import Table  # noqa: E402

ROOT = brokers.ROOT
#: The Kafka version kafka.sh and the cluster harness run (and whose tools load both brokers).
DEFAULT_KAFKA_VERSION = "3.9.2"
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
# Single node first (1, 2a, 3a), then the 3-broker scenarios of the issue (2+3, 4+5+7).
SCENARIOS = scenarios.SCENARIOS + cluster_scenarios.SCENARIOS


def log(msg: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)
        return (r.stdout or r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def machine(workdir: Path) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "unknown")
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    src_fs = sh(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(workdir)]).split()
    disk = "unknown"
    if src_fs:
        dev = src_fs[0]
        info = sh(["lsblk", "-dno", "MODEL,ROTA,SIZE", dev]).split()
        rota = {"0": "reported non-rotational", "1": "reported rotational"}
        if info:
            size, rot = info[-1], rota.get(info[-2], "?") if len(info) >= 2 else "?"
            model_name = " ".join(info[:-2]) or "no model string (virtual disk)"
            disk = f"{dev} ({model_name}, {rot}, {size}), {src_fs[1] if len(src_fs) > 1 else '?'} file system"
        else:
            disk = f"{dev}, {src_fs[1] if len(src_fs) > 1 else '?'} file system"
    return {
        "cpu": f"{os.cpu_count()} cores, {model}",
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "disk": disk,
        "data_dir": str(workdir),
    }


def versions() -> dict[str, str]:
    commit = sh(["git", "rev-parse", "--short=12", "HEAD"], ROOT)
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"], ROOT)
    try:
        import confluent_kafka

        rdk = f"librdkafka {confluent_kafka.libversion()[0]} (confluent-kafka {confluent_kafka.__version__})"
    except ImportError:
        rdk = "confluent-kafka not importable here"
    java = sh(["java", "-version"]).splitlines()
    return {
        "kafka": f"Apache Kafka {KAFKA_VERSION}: KRaft; single node: one combined "
                 "broker+controller node, Kafka's defaults apart from what a single node needs (RF 1 for its internal "
                 "topics; `e2e/tools/kafka.sh start-single`); 3 brokers: three combined broker+controller nodes "
                 "(all voters, like Skiff's), started by the cluster-test harness (`broker/tests/cluster/"
                 "kafka_target.py`) with kafka-server-start.sh's JVM options",
        "java": java[0] if java else "unknown",
        "skiff": f"commit {commit}" + (" with uncommitted changes" if dirty else "")
                 + f", {sh([str(brokers.SKIFF_BIN), '--version'])} (release build), defaults "
                 "(skiff.ack.durability=fsync) unless a column says otherwise",
        "clients": f"Kafka tools {KAFKA_VERSION} (Java), {rdk}, Python {platform.python_version()}",
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Bench:
    """One benchmark run: owns the work directory and every broker start."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.work_dir).resolve()
        self.idle_settle_s = args.idle_settle
        self.ctx = scenarios.Ctx(
            sizes=scenarios.QUICK if args.quick else scenarios.FULL,
            partitions=args.partitions,
            log=self.workdir / "loads.log",
            footprint=scenarios.footprint_table(args.idle_settle),
            offered_rate=args.rate,
            cluster_rate=args.cluster_rate,
            kafka_flush_variant=args.kafka_flush_variant if args.kafka_flush_variant is not None else not args.quick,
        )
        self.ctx.footprint.runs = 0
        self.limit_values: dict[str, list[float]] = {}
        self.limit_errors: dict[str, str] = {}
        self.starts = 0
        self.incidents: list[str] = []

    def start(self, target: brokers.Target, name: str) -> brokers.Running:
        self.starts += 1
        log(f"{name}: starting {target.label}")
        try:
            running = brokers.start(target, self.workdir / name, self.idle_settle_s)
        except brokers.BrokerError as e:
            # Ports are shared with everything else on the machine: one more try on others.
            log(f"{name}: {e}; retrying once")
            self.incidents.append(f"{name}: start failed, retried: {e}")
            running = brokers.start(target, self.workdir / name, self.idle_settle_s)
        log(f"{name}: {target.label} serving on {running.bootstrap} after {running.start_to_serving_ms:.0f} ms, "
            f"idle RSS {running.idle_rss_kib / 1024:.1f} MiB")
        scenarios.record_start(self.ctx, running)
        for note in running.notes:
            log(f"{name}: {note}")
            self.incidents.append(f"{name}: {note}")
        return running

    def stop(self, running: brokers.Running) -> None:
        t0 = time.monotonic()
        try:
            running.stop()
            log(f"{running.workdir.name}: stopped in {time.monotonic() - t0:.1f} s")
        finally:
            scenarios.record_stop(self.ctx, running)
            # Logs stay for a post-mortem; the data (GBs) goes.
            shutil.rmtree(running.workdir / "data", ignore_errors=True)

    def measure_limits(self) -> None:
        log("physical limits: dd (1 GiB, with and without fdatasync), loopback TCP, memcpy")
        for key, v in limits.measure_once(self.workdir).items():
            if isinstance(v, float):
                self.limit_values.setdefault(key, []).append(v)
            else:
                self.limit_errors[key] = v
        log("limits: " + ", ".join(f"{k} {v[-1]:,.0f} MB/s" for k, v in self.limit_values.items() if ":" not in k))

    def run_scenario(self, sc: scenarios.Scenario) -> list[Table]:
        table = sc.table(self.ctx)
        table.runs = self.args.runs
        companions = sc.companions(self.ctx)
        for t in companions:
            t.runs = self.args.runs
            self.ctx.companions[t.key] = t
        for run in range(self.args.runs):
            k = run % len(table.targets)  # rotate who goes first, against drift
            for target in table.targets[k:] + table.targets[:k]:
                if self.args.only and target.kind != self.args.only:
                    continue
                name = f"s{sc.key}-run{run + 1}-{target.label.lower().replace(' ', '-').replace('(', '').replace(')', '')}"
                running = None
                try:
                    running = self.start(target, name)
                    scenarios.warm_up(self.ctx, running)
                    t0 = time.monotonic()
                    sc.measure(self.ctx, table, running, run)
                    log(f"{name}: measured in {time.monotonic() - t0:.0f} s")
                except Exception as e:
                    reason = f"run {run + 1}: {type(e).__name__}: {e}"
                    for t in [table, *companions]:
                        t.run_error(target, reason)
                    log(f"{name}: FAILED {reason}")
                finally:
                    if running is not None:
                        self.stop(running)
        return [table, *companions]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small loads, 1 run per scenario (unless --runs)")
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario and target (default: 3, quick: 1)")
    ap.add_argument("--scenarios", default=None,
                    help="comma-separated scenario keys: 1, 2a, 3a (1 node), 2, 3, 4, 5, 7 (3 brokers; 3 is "
                         "measured with 2, and 5 and 7 with 4); footprint, 6, is always collected. Default: all; "
                         "with --quick all but 2a and 3a")
    ap.add_argument("--rate", type=float, default=None,
                    help="scenario 2 offered load in msgs/s (default: 50 %% of Kafka's max in the first run)")
    ap.add_argument("--cluster-rate", type=float, default=None,
                    help="scenarios 2 and 3 (3 brokers) offered load in msgs/s (default: 50 %% of Kafka's max there)")
    ap.add_argument("--partitions", type=int, default=1, help="partitions per topic (default 1)")
    ap.add_argument("--kafka-flush-variant", action=argparse.BooleanOptionalAction, default=None,
                    help="also run Kafka with log.flush.interval.messages=1 in scenario 2 (default: on, off with --quick)")
    ap.add_argument("--only", choices=["kafka", "skiff"], default=None,
                    help="run only this broker's targets (for developing the benchmark; no ratios)")
    ap.add_argument("--idle-settle", type=float, default=2.0, help="seconds after serving before idle RSS is read")
    ap.add_argument("--work-dir", default=str(ROOT / "target" / "bench"),
                    help="brokers' data (must be a real disk, not tmpfs); emptied at start")
    ap.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--plots", default=str(HERE / "plots"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md and plots alone")
    ap.add_argument("--section", default=None,
                    help="the BENCHMARKS.md section to write (its <!-- NAME:begin --> markers); default: bench for "
                         "Kafka 3.9.x, bench-kafka-VERSION for any other KAFKA_VERSION")
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.section is None:
        args.section = "bench" if KAFKA_VERSION.startswith("3.9.") else f"bench-kafka-{KAFKA_VERSION}"
    if not 1 <= args.runs <= 20:
        ap.error("--runs must be between 1 and 20")
    if args.scenarios is None:
        # --quick: the scenarios only; the single-node acks=all and end-to-end
        # ones (2a, 3a) are superseded there by their 3-broker versions (2, 3).
        args.scenarios = ",".join(s.key for s in SCENARIOS if not (args.quick and s.key in ("2a", "3a")))
    known = {s.key for s in SCENARIOS}
    args.selected = [cluster_scenarios.GROUPS.get(k.strip(), k.strip()) for k in args.scenarios.split(",")
                     if k.strip() and k.strip() != "6"]
    unknown = set(args.selected) - known
    if unknown:
        ap.error(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(known | set(cluster_scenarios.GROUPS))} and 6")
    return args


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    # SIGTERM (e.g. make killed) unwinds like Ctrl-C, so `finally` stops the brokers.
    signal.signal(signal.SIGTERM, _interrupt)
    bench = Bench(args)
    if bench.workdir.exists():
        shutil.rmtree(bench.workdir)
    bench.workdir.mkdir(parents=True)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    meta = {"machine": machine(bench.workdir), "versions": versions(), "load_start": loadavg(),
            "command": ("" if KAFKA_VERSION == DEFAULT_KAFKA_VERSION else f"KAFKA_VERSION={KAFKA_VERSION} ")
                       + "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]]),
            "kafka_version": KAFKA_VERSION,
            "mode": "quick" if args.quick else "full", "runs": args.runs}
    log(f"{meta['mode']} run, {args.runs} run(s) per scenario; machine: {meta['machine']['cpu']}; load {meta['load_start']}")
    tables: list[Table] = []
    try:
        bench.measure_limits()
        for sc in SCENARIOS:
            if sc.key in args.selected:
                log(f"scenario {sc.key}: {sc.title}")
                tables.extend(bench.run_scenario(sc))
        if not args.quick:
            bench.measure_limits()  # again after the brokers: disks of virtual machines drift
    except KeyboardInterrupt:
        log("interrupted: stopping brokers, writing nothing")
        return 130
    finally:
        brokers.stop_all()
    bench.ctx.footprint.runs = 0  # a count of starts, not of runs: no "k of n failed" here
    meta["load_end"] = loadavg()
    meta["started_at"] = started_at.strftime("%Y-%m-%d %H:%M UTC")
    meta["minutes"] = (time.monotonic() - started) / 60
    meta["offered_rate"] = bench.ctx.offered_rate
    meta["cluster_rate"] = bench.ctx.cluster_rate
    meta["broker_starts"] = bench.starts
    meta["incidents"] = bench.incidents

    made = [] if args.no_write else (report.plots(tables, bench.ctx.footprint, Path(args.plots))
                                     + cluster_scenarios.timeline_plots(bench.ctx.timelines, Path(args.plots)))
    output = Path(args.output)
    section = report.section(meta, bench.limit_values, bench.limit_errors, tables, bench.ctx.footprint, made,
                             output.parent)
    print(section)
    raw = {"meta": meta, "limits": bench.limit_values, "limit_errors": bench.limit_errors,
           "tables": [_table_json(t) for t in tables + [bench.ctx.footprint]]}
    (bench.workdir / "results.json").write_text(json.dumps(raw, indent=1))
    if not args.no_write:
        report.write_section(output, section, args.section)
        log(f"wrote {output} and {len(made)} plot(s) in {args.plots}; raw results in {bench.workdir / 'results.json'}")
    return 0


def _table_json(t: Table) -> dict:
    return {"key": t.key, "title": t.title, "targets": [asdict(x) for x in t.targets], "failed": t.failed,
            "run_errors": t.run_errors, "warnings": {k: list(v) for k, v in t.warnings.items()},
            "rows": [{"metric": r.metric, "unit": r.unit, "values": r.values, "errors": r.errors} for r in t.rows]}


if __name__ == "__main__":
    sys.exit(main())
