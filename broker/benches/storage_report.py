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


def dd_bandwidth(mib: int) -> float:
    """MB/s of writing `mib` MiB sequentially to a new file, fdatasync'ed at the end."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=BENCH_DIR) as f:
        args = ["dd", "if=/dev/zero", f"of={f.name}", "bs=1M", f"count={mib}", "conv=fdatasync"]
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


# (group, name, label, MiB the case writes (dd writes as much next to it), target vs dd)
CASES = [
    ("append", "fsync_at_end", "append, one fsync at the end (like dd conv=fdatasync)", 256, 0.70),
    ("append", "group_commit_16_producers_5_in_flight",
     "append, group commit, 16 producers with 5 batches each awaiting fsync (like Kafka producers)", 64, 0.50),
    ("append", "group_commit_16_producers", "append, group commit, 16 producers with 1 batch each awaiting fsync",
     64, None),
    ("append", "fsync_per_batch", "append, fsync after every 16 KiB batch", 16, None),
    ("read", "sequential_1MiB_fetches", "sequential read, 1 MiB fetches (page cache)", 256, None),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dd-runs", type=int, default=3, help="dd runs before and after each case")
    args = ap.parse_args()

    subprocess.run(["cargo", "bench", "-p", "skiff-broker", "--bench", "log", "--no-run"], cwd=ROOT, check=True)
    rows, all_dd = [], []
    for group, name, label, mib, target in CASES:
        # dd right before and after each case, writing as much as it does: the disk of a
        # virtual machine drifts, and how much dirty data one fdatasync flushes matters.
        dd = [dd_bandwidth(mib) for _ in range(args.dd_runs)]
        subprocess.run(["cargo", "bench", "-p", "skiff-broker", "--bench", "log", "--", "--exact", f"{group}/{name}"],
                       cwd=ROOT, check=True)
        dd += [dd_bandwidth(mib) for _ in range(args.dd_runs)]
        all_dd += dd
        dd_med = statistics.median(dd)
        med, lo, hi = criterion_mbps(group, name)
        ratio = med / dd_med
        verdict = "" if target is None else (" (target ≥ {:.0f} %: {})".format(target * 100, "met" if ratio >= target else "NOT met"))
        rows.append(f"| {label} | {med:,.0f} | {lo:,.0f}–{hi:,.0f} | {mib} MiB: {dd_med:,.0f} "
                    f"({min(dd):,.0f}–{max(dd):,.0f}) | {ratio * 100:.0f} %{verdict} |")

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "unknown")
    section = "\n".join([
        BEGIN,
        "## Storage engine (single partition log)",
        "",
        "1 KiB records in 16 KiB batches (16 records), `LogConfig::default()` (1 GiB preallocated segments).",
        f"Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}.",
        "Each case runs right after and before "
        f"{args.dd_runs} runs of `dd if=/dev/zero bs=1M count=<MiB> conv=fdatasync` writing as much as the case "
        "does (a new file, one fdatasync at the end); its ratio is to the median of those dd runs. "
        f"All {len(all_dd)} dd runs: median {statistics.median(all_dd):,.0f} MB/s (min {min(all_dd):,.0f}, "
        f"max {max(all_dd):,.0f}). Group commit: the broker's flusher (`log::flush::GroupCommit`) with "
        "producers that append and await durability as acks=all produce requests do.",
        "",
        "| case | median MB/s | 95 % CI of median | dd next to it: median MB/s (min–max) | vs dd |",
        "|---|---|---|---|---|",
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
