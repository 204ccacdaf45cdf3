"""Turns results into Markdown tables, PNG plots and the section of BENCHMARKS.md.

Writes only between its own markers in BENCHMARKS.md; other sections (the storage
engine's, written by broker/benches/storage_report.py) are left as they are.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from results import Row, Table, median, ratio, summary

NEW_FILE = ("# Benchmarks\n\nFigures are written by the benchmark programs; do not edit the sections "
            "between markers by hand.\n\n")
LIMIT_SHORT = {"disk_fdatasync": "disk fdatasync", "disk_cached": "disk page cache",
               "disk_fsync_16k": "16 KiB fdatasync appends", "loopback_tcp": "loopback TCP", "memcpy": "memcpy"}


def fmt(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1000:  # counts, whole milliseconds
        return str(int(v))
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(r: float) -> str:
    """Two decimals, or two significant digits for ratios far from 1 (0.0023)."""
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def cell(table: Table, row: Row, label: str, limits: dict[str, list[float]]) -> str:
    vals = row.values.get(label, [])
    errs = row.errors.get(label, []) + table.run_errors.get(label, [])
    s = summary(vals)
    if s is None:
        if errs:
            return "**failed**: " + _short(errs[0], 100)
        return "**failed** (see above)" if table.failed else "–"
    text = fmt(s[0]) if len(vals) == 1 else f"{fmt(s[0])} ({fmt(s[1])}–{fmt(s[2])})"
    key = row.limit_for(label)
    lim = median(limits.get(key, [])) if key else None
    if lim:
        text += f" · {s[0] / lim * 100:.0f} % of {LIMIT_SHORT[key]}"
    if len(vals) < table.runs:
        text += f" ({table.runs - len(vals)} of {table.runs} runs failed: {_short(errs[0], 100) if errs else '?'})"
    return text


def _short(reason: str, limit: int = 300) -> str:
    text = reason.replace("\n", " ")
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def markdown_table(table: Table, limits: dict[str, list[float]]) -> str:
    head = ["figure"]
    for t in table.targets:
        head.append(t.label)
        if t.is_skiff and table.baseline:
            head.append(f"{t.label} / {table.baseline.label}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = [row.metric]
        for t in table.targets:
            cells.append(cell(table, row, t.label, limits))
            if t.is_skiff and table.baseline:
                r = ratio(table, row, t)
                cells.append("–" if r is None else fmt_ratio(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_of_table(table: Table, limits: dict[str, list[float]]) -> str:
    out = [f"### {table.key}. {table.title}", ""]
    if table.failed:
        out += [f"**Failed**: {_short(table.failed)}", ""]
    for n in table.notes:
        out += [n, ""]
    out += [markdown_table(table, limits), ""]
    for label, errs in table.run_errors.items():
        for e in dict.fromkeys(errs):
            out.append(f"- {label}: run failed: {_short(e)}")
    warned = {label: list(w) for label, w in table.warnings.items() if w}
    if warned:
        out.append("")
        out.append("Load generator warnings (first occurrence of each, over all runs):")
        for label, lines in warned.items():
            for w in lines[:8]:
                out.append(f"- {label}: `{w[:200]}`")
            if len(lines) > 8:
                out.append(f"- {label}: … and {len(lines) - 8} more (see the load log)")
    return "\n".join(out).rstrip() + "\n"


def limits_table(limits: dict[str, list[float]], errors: dict[str, str], labels: dict[str, str]) -> str:
    def value(key: str) -> str | None:
        s = summary(limits.get(key, []))
        if s is None:
            return None
        return fmt(s[0]) if len(limits[key]) == 1 else f"{fmt(s[0])} ({fmt(s[1])}–{fmt(s[2])})"

    lines = ["| limit | MB/s |", "|---|---|"]
    for key, label in labels.items():
        v = value(key) or f"**failed**: {_short(errors.get(key, '?'))}"
        p50, p99 = value(f"{key}:p50_ms"), value(f"{key}:p99_ms")
        if p50 and p99:
            v += f"; one append + fdatasync: p50 {p50} ms, p99 {p99} ms"
        lines.append(f"| {label} | {v} |")
    return "\n".join(lines)


def target_checks(tables: list[Table], footprint: Table) -> list[str]:
    """The product's targets, met or not, from the medians (printed, never asserted)."""
    checks = []

    def verdict(ok: bool | None) -> str:
        return "n/a (not measured)" if ok is None else ("met" if ok else "**not met**")

    thr = []
    for t in tables:
        for row in t.rows:
            if row.capacity:
                for target in t.targets:
                    r = ratio(t, row, target)
                    if r is not None:
                        thr.append((f"{t.key}: {row.metric}, {target.label}", r))
    low = [f"{n} ({r:.2f}×)" for n, r in thr if r < 1]
    checks.append(f"Skiff ≥ Kafka throughput: {verdict(None if not thr else not low)}"
                  + (f"; below: {'; '.join(low)}" if low else ""))
    p99 = []
    for t in tables:
        for row in t.rows:
            if row.pct == "p99":
                for target in t.targets:
                    r = ratio(t, row, target)
                    if r is not None:
                        p99.append((f"{t.key}: {row.metric}, {target.label}", r))
    high = [f"{n} ({r:.2f}×)" for n, r in p99 if r > 0.5]
    checks.append(f"Skiff p99 ≤ 0.5 × Kafka's: {verdict(None if not p99 else not high)}"
                  + (f"; above: {'; '.join(high)}" if high else ""))
    rss = median(footprint.row("idle RSS after start: MiB").values.get("Skiff", []))
    checks.append(f"Skiff idle RSS ≤ 30 MiB: {verdict(None if rss is None else rss <= 30)}"
                  + ("" if rss is None else f" ({fmt(rss)} MiB)"))
    st = median(footprint.row("start to serving: ms").values.get("Skiff", []))
    checks.append(f"Skiff start to serving < 200 ms: {verdict(None if st is None else st < 200)}"
                  + ("" if st is None else f" ({fmt(st)} ms)"))
    return checks


# ---------------------------------------------------------------------------------------
# Plots


def plots(tables: list[Table], footprint: Table, out_dir: Path) -> list[tuple[str, Path]]:
    """PNG files (title, path); nothing when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    colors = {"Kafka": "#4c72b0", "Kafka (flush every message)": "#8da0cb", "Skiff": "#dd8452",
              "Skiff (fsync)": "#dd8452", "Skiff (memory)": "#55a868"}

    def bars(ax, groups: list[str], series: dict[str, list[tuple[float, float, float] | None]]) -> None:
        n = max(1, len(series))
        width = 0.8 / n
        for i, (label, vals) in enumerate(series.items()):
            xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
            meds = [v[0] if v else 0 for v in vals]
            err = [[v[0] - v[1] if v else 0 for v in vals], [v[2] - v[0] if v else 0 for v in vals]]
            ax.bar(xs, meds, width, yerr=err, capsize=3, label=label, color=colors.get(label))
            for x, v in zip(xs, vals):
                note = "failed" if v is None else "0" if v[0] == 0 else None
                if note:  # nothing to draw (and 0 has no place on a log axis)
                    ax.annotate(note, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, fontsize=7)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)

    # Throughput: every MB/s row marked for it, one bar per target.
    rows = [(t, r) for t in tables for r in t.rows if r.plot == "throughput"]
    if rows:
        fig, axes = plt.subplots(1, len({t.key for t, _ in rows}), figsize=(12, 4.5), squeeze=False,
                                 gridspec_kw={"width_ratios": [sum(1 for tt, _ in rows if tt.key == k)
                                                               for k in dict.fromkeys(t.key for t, _ in rows)]})
        for ax, key in zip(axes[0], dict.fromkeys(t.key for t, _ in rows)):
            table = next(t for t, _ in rows if t.key == key)
            trs = [r for t, r in rows if t.key == key]
            series = {t.label: [summary(r.values.get(t.label, [])) for r in trs] for t in table.targets}
            bars(ax, [_wrap(r.metric.replace(": MB/s", "")) for r in trs], series)
            ax.set_title(_wrap(f"{key}. {table.title}", 44), fontsize=9)
            ax.set_ylabel("MB/s (median, min–max)")
        fig.tight_layout()
        path = out_dir / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(("Throughput", path))

    # Latency: one figure per scenario with percentile rows, one panel per generator.
    for table in tables:
        groups = list(dict.fromkeys(r.plot for r in table.rows if r.pct))
        if not groups:
            continue
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
        for ax, g in zip(axes[0], groups):
            trs = [r for r in table.rows if r.plot == g and r.pct]
            series = {t.label: [summary(r.values.get(t.label, [])) for r in trs] for t in table.targets}
            bars(ax, [r.pct for r in trs], series)
            ax.set_yscale("log")
            ax.set_title(f"{table.key}. {g}", fontsize=9)
            ax.set_ylabel("latency, ms (log; median, min–max)")
        fig.suptitle(table.title, fontsize=10)
        fig.tight_layout()
        path = out_dir / f"latency-scenario-{table.key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append((f"Latency percentiles, scenario {table.key}", path))

    trs = [r for r in footprint.rows if r.plot == "footprint"]
    if any(r.values for r in trs):
        fig, axes = plt.subplots(1, len(trs), figsize=(4 * len(trs), 3.6), squeeze=False)
        for ax, r in zip(axes[0], trs):
            bars(ax, [""], {t.label: [summary(r.values.get(t.label, []))] for t in footprint.targets})
            ax.set_yscale("log")
            ax.set_title(r.metric, fontsize=9)
        fig.tight_layout()
        path = out_dir / "footprint.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(("Footprint", path))
    return made


def _wrap(text: str, width: int = 18) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return "\n".join(lines + [cur])


# ---------------------------------------------------------------------------------------
# BENCHMARKS.md


def markers(name: str) -> tuple[str, str]:
    """The markers around section `name` (`bench`: the main comparison)."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path: Path, section: str, name: str = "bench") -> None:
    """Replace (or append) the text between section `name`'s markers; keep everything else."""
    begin, end = markers(name)
    block = f"{begin}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else NEW_FILE
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def make_target(meta: dict) -> str:
    """The make target that reproduces this run."""
    if not meta["kafka_version"].startswith("3.9."):
        return "make bench-kafka4"
    return "make bench" if meta["mode"] == "full" else "make bench-quick"


def section(meta: dict, limit_values: dict[str, list[float]], limit_errors: dict[str, str], tables: list[Table],
            footprint: Table, plots_made: list[tuple[str, Path]], doc_dir: Path) -> str:
    """The whole BENCHMARKS.md section (without the markers)."""
    from limits import LIMITS

    m, v = meta["machine"], meta["versions"]
    full = meta["mode"] == "full"
    out = [
        f"## Skiff and Apache Kafka {meta['kafka_version']}, same machine, same run",
        "",
        ("Full run: every figure is the **median of "
         f"{meta['runs']} runs**, with the min–max over the runs in brackets: the spread is how noisy the figure is."
         if meta["runs"] > 1 else
         f"**{'Quick' if not full else 'Single'} run: one run per scenario and broker, so there is no spread to "
         "show and every figure is as noisy as one sample.** `make bench` takes the median of 3 runs."),
        f"Each run starts the broker fresh (new data directory), warms it up with the same unmeasured traffic "
        "for both, runs the load and stops it. Ratios are Skiff's median over Kafka's. "
        f"Run {meta['started_at']}, {meta['minutes']:.0f} min, {meta['broker_starts']} broker starts; "
        f"load average (1/5/15 min) {meta['load_start']} at the start and {meta['load_end']} at the end "
        f"on {m['cpu'].split(',')[0]}: other work on the machine makes figures noisy.",
        "",
        f"Reproduce: `{make_target(meta)}` (runs `{meta['command']}` in the venv of "
        "`e2e/bench/install.sh` after building the release broker).",
        "",
        "### Machine and versions",
        "",
        f"- CPU: {m['cpu']}; memory {m['memory']}; {m['kernel']}",
        f"- Disk: {m['disk']}; brokers' data in `{m['data_dir']}`",
        f"- {v['kafka']}; {v['java']}",
        f"- Skiff {v['skiff']}",
        f"- Load generators: {v['clients']}",
        "- Brokers and load generators share the machine's cores, on loopback.",
        "",
        "### Physical limits (same run)",
        "",
        limits_table(limit_values, limit_errors, LIMITS),
        "",
        ("Measured before the brokers and again after them." if full else "Measured once, before the brokers.")
        + " Throughputs below are also shown as a fraction of the limit that bounds them: loopback TCP for acks=1 "
        "produce and for consume, the disk's sequential rate with fdatasync for acks=all answered after an fsync, "
        "its page-cache write rate for acks=all without one. The 16 KiB-append row is the floor of acks=all after "
        "fsync when nothing is batched (one fdatasync per produce request of the Java producer's default batch size); "
        "its latency is the disk's, not a broker's.",
        "",
        "### Targets (medians; printed, never asserted)",
        "",
        *[f"- {c}" for c in target_checks(tables, footprint)],
        "",
    ]
    for t in tables:
        out.append(section_of_table(t, limit_values))
    out.append(section_of_table(footprint, limit_values))
    if plots_made:
        out += ["### Plots", ""]
        for title, path in plots_made:
            rel = os.path.relpath(path, doc_dir)
            out += [f"![{title}]({rel})", ""]
    if meta.get("incidents"):
        out += ["### Incidents during the run", ""] + [f"- {_short(i)}" for i in meta["incidents"]] + [""]
    out += [
        "### Not measured yet",
        "",
        "- Network faults (partitions, slow links) and disk faults are covered by the cluster tests "
        "(`broker/tests/cluster`), not benchmarked. Everything runs on one machine over loopback: replication "
        "costs CPU and page cache here, not network.",
    ]
    return "\n".join(out)
