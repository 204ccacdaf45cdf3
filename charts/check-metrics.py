#!/usr/bin/env python3
"""Every Skiff metric the chart's alerts and dashboard query is one the code exports.

Reads the metric names registered in broker/src/metrics/mod.rs (prefix skiff_) and
operator/src/metrics.rs (prefix skiff_operator_), and fails naming each series that
the rendered PrometheusRule (argument 1) or the Grafana dashboard asks for but
nothing exports, so an alert cannot silently watch a series that never exists.
Histograms also export _bucket, _sum and _count.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r'\b(Opts|HistogramOpts|IntGauge|IntCounter|Counter|Gauge)::new\(\s*"([a-z_]+)"')
# Not metric names: the PodMonitor's cluster label.
LABELS = {"skiff_cluster"}


def exported() -> set[str]:
    names = set()
    for path, prefix in [("broker/src/metrics/mod.rs", "skiff_"), ("operator/src/metrics.rs", "skiff_operator_")]:
        text = (ROOT / path).read_text()
        for constructor, name in NAME.findall(text):
            full = prefix + name
            names.add(full)
            if constructor == "HistogramOpts":
                names.update(full + s for s in ("_bucket", "_sum", "_count"))
    return names


def main() -> None:
    known = exported()
    used: dict[str, set[str]] = {}
    for path in [Path(sys.argv[1]), ROOT / "charts/skiff-operator/dashboards/skiff.json"]:
        for name in re.findall(r"\bskiff_[a-z_]*[a-z]\b", path.read_text()):
            if name not in LABELS:
                used.setdefault(name, set()).add(path.name)
    missing = {n: sorted(p) for n, p in used.items() if n not in known}
    if missing:
        for name, where in sorted(missing.items()):
            print(f"check-metrics: {name} (in {', '.join(where)}) is exported by neither broker nor operator",
                  file=sys.stderr)
        sys.exit(1)
    print(f"check-metrics: ok ({len(used)} series queried, all exported)")


if __name__ == "__main__":
    main()
