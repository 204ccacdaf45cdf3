#!/usr/bin/env python3
"""Storage-engine benchmark report.

Measures this machine's sequential write bandwidth with dd (conv=fdatasync),
runs the criterion benchmark `cargo bench -p skiff-broker --bench log`, and
writes both, with their ratio, into the storage section of BENCHMARKS.md.

Usage: python3 broker/benches/storage_report.py [--dd-runs N]
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(os.environ.get("SKIFF_BENCH_DIR", ROOT / "target" / "tmp"))
BEGIN, END = "<!-- storage:begin -->", "<!-- storage:end -->"


def dd_bandwidth(sync: bool) -> float:
    """MB/s of writing 1 GiB sequentially, fdatasync'ed at the end if `sync`."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=BENCH_DIR) as f:
        args = ["dd", "if=/dev/zero", f"of={f.name}", "bs=1M", "count=1024"]
        if sync:
            args.append("conv=fdatasync")
        out = subprocess.run(args, capture_output=True, text=True, check=True).stderr
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out)
    if not m:
        sys.exit(f"cannot parse dd output: {out}")
    return int(m.group(1)) / float(m.group(2)) / 1e6


def criterion_mbps(group: str, name: str) -> tuple[float, float, float]:
    """(median, low, high) MB/s from criterion's estimates and throughput."""
    base = ROOT / "target" / "criterion" / group / name / "new"
    est = json.loads((base / "estimates.json").read_text())
    bench = json.loads((base / "benchmark.json").read_text())
    nbytes = bench["throughput"]["Bytes"]
    med = est["median"]
    to_mbps = lambda ns: nbytes / (ns / 1e9) / 1e6
    return to_mbps(med["point_estimate"]), to_mbps(med["confidence_interval"]["upper_bound"]), to_mbps(med["confidence_interval"]["lower_bound"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dd-runs", type=int, default=5)
    args = ap.parse_args()

    dd_sync = [dd_bandwidth(True) for _ in range(args.dd_runs)]
    subprocess.run(["cargo", "bench", "-p", "skiff-broker", "--bench", "log"], cwd=ROOT, check=True)
    # dd again after the benchmark: the disk of a virtual machine drifts.
    dd_sync += [dd_bandwidth(True) for _ in range(args.dd_runs)]
    dd_med = statistics.median(dd_sync)

    rows = []
    for group, name, label, target in [
        ("append", "fsync_at_end", "append, one fsync at the end (like dd conv=fdatasync)", 0.70),
        ("append", "group_commit_16_producers", "append, group commit, 16 producers waiting for fsync", 0.50),
        ("append", "fsync_per_batch", "append, fsync after every 16 KiB batch", None),
        ("read", "sequential_1MiB_fetches", "sequential read, 1 MiB fetches (page cache)", None),
    ]:
        med, lo, hi = criterion_mbps(group, name)
        ratio = med / dd_med
        verdict = "" if target is None else (" (target ≥ {:.0f} %: {})".format(target * 100, "met" if ratio >= target else "NOT met"))
        rows.append(f"| {label} | {med:,.0f} | {lo:,.0f}–{hi:,.0f} | {ratio * 100:.0f} %{verdict} |")

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "unknown")
    section = "\n".join([
        BEGIN,
        "## Storage engine (single partition log)",
        "",
        "1 KiB records in 16 KiB batches (16 records), `LogConfig::default()` (1 GiB preallocated segments).",
        f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}.",
        f"Raw sequential write, `dd if=/dev/zero bs=1M count=1024 conv=fdatasync`: median **{dd_med:,.0f} MB/s** "
        f"over {len(dd_sync)} runs (min {min(dd_sync):,.0f}, max {max(dd_sync):,.0f}; half before, half after the benchmark).",
        "",
        "| case | median MB/s | 95 % CI of median | vs dd |",
        "|---|---|---|---|",
        *rows,
        "",
        "Reproduce: `python3 broker/benches/storage_report.py` (runs dd and `cargo bench -p skiff-broker --bench log`).",
        END,
    ])
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures are written by the benchmark programs; do not edit the sections between markers by hand.\n\n"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
