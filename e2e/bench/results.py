"""What a benchmark run found: tables of per-run values, and their summaries.

Pure data: no processes, no files. A scenario declares its rows up front, so a figure
that could not be measured still shows up, as failed with the reason.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from brokers import Target


@dataclass
class Row:
    """One figure of a scenario, measured for each target in each run."""

    metric: str
    unit: str
    better: str  # "higher" | "lower"
    # Key of the physical limit the figure is shown against (limits.LIMITS), either one
    # for every target or per target label.
    limit: str | dict[str, str] | None = None
    # For plots: "throughput", or a latency group name (the percentile is in `pct`).
    plot: str | None = None
    pct: str | None = None
    # A broker's capacity (unthrottled throughput): what "Skiff ≥ Kafka throughput" checks.
    capacity: bool = False
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def limit_for(self, label: str) -> str | None:
        return self.limit.get(label) if isinstance(self.limit, dict) else self.limit


@dataclass
class Table:
    """A scenario's results: targets are columns, rows are figures."""

    key: str
    title: str
    targets: list[Target]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    failed: str | None = None  # the whole scenario could not run (e.g. calibration failed)
    run_errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, dict[str, None]] = field(default_factory=dict)

    def row(self, metric: str) -> Row:
        for r in self.rows:
            if r.metric == metric:
                return r
        raise KeyError(metric)

    def add(self, target: Target, metric: str, value: float) -> None:
        self.row(metric).values.setdefault(target.label, []).append(value)

    def error(self, target: Target, metrics: list[str], reason: str) -> None:
        for m in metrics:
            self.row(m).errors.setdefault(target.label, []).append(reason)

    def run_error(self, target: Target, reason: str) -> None:
        self.run_errors.setdefault(target.label, []).append(reason)

    def warn(self, target: Target, lines: list[str]) -> None:
        w = self.warnings.setdefault(target.label, {})
        for line in lines:
            w.setdefault(line, None)

    @property
    def baseline(self) -> Target | None:
        """The column ratios are taken against: the first Kafka target."""
        return next((t for t in self.targets if t.kind == "kafka"), None)


def summary(values: list[float]) -> tuple[float, float, float] | None:
    """(median, min, max), or None without values."""
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def median(values: list[float]) -> float | None:
    s = summary(values)
    return s[0] if s else None


def ratio(table: Table, row: Row, target: Target) -> float | None:
    """median(target) / median(baseline) for a Skiff target, else None."""
    base = table.baseline
    if base is None or not target.is_skiff:
        return None
    a, b = median(row.values.get(target.label, [])), median(row.values.get(base.label, []))
    if a is None or not b:
        return None
    return a / b
