"""Load generators nobody here wrote, run as separate processes with bounded time.

Kafka's own tools (ProducerPerformance, ConsumerPerformance, EndToEndLatency, through
`e2e/tools/kafka.sh tool`) and librdkafka (confluent-kafka, driven by rdkafka_load.py).
Each function returns the generator's figures as a dict and raises LoadError with the
generator's own last words when it fails. MB = 10^6 bytes everywhere (the Java tools
print MiB; converted here).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from brokers import KAFKA_SH

HERE = Path(__file__).resolve().parent
RDKAFKA_LOAD = HERE / "rdkafka_load.py"
MIB = 1024 * 1024


class LoadError(RuntimeError):
    """A load generator failed or printed nothing we can read."""


# While set, a load is ended as soon as this returns a reason (the broker died), instead
# of waiting for the client's own timeouts (minutes). Set by `watching`.
_broker_gone: Callable[[], str | None] | None = None


@contextmanager
def watching(broker_gone: Callable[[], str | None]):
    """Loads started inside end early when `broker_gone()` returns a reason."""
    global _broker_gone
    previous, _broker_gone = _broker_gone, broker_gone
    try:
        yield
    finally:
        _broker_gone = previous


def run(cmd: list[str], timeout_s: float, log: Path | None = None) -> tuple[str, str]:
    """Run to completion in its own process group; kill the group on timeout."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise LoadError(f"{_name(cmd)}: no result within {timeout_s:.0f} s (killed)") from None
                gone = _broker_gone() if _broker_gone else None
                if gone:
                    raise LoadError(f"{_name(cmd)} stopped: {gone}") from None
    except BaseException:  # timeout, broker gone, or the benchmark itself interrupted
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out}\n{err}\n")
    if proc.returncode != 0:
        raise LoadError(f"{_name(cmd)} exited with {proc.returncode}: {_last_words(err or out)}")
    return out, err


def _name(cmd: list[str]) -> str:
    """"ProducerPerformance", "rdkafka_load.py produce", ... for messages."""
    if Path(cmd[0]).name == "kafka.sh":
        return cmd[2]
    return " ".join(Path(c).name for c in cmd[1:3])


def _last_words(text: str) -> str:
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    interesting = [l for l in lines if "Exception" in l or "ERROR" in l or "rdkafka_load:" in l]
    return (interesting or lines or ["(no output)"])[-1][:300]


def warnings_of(stderr: str) -> list[str]:
    """WARN/ERROR lines of a Java tool, without timestamps, first occurrence of each."""
    seen: dict[str, None] = {}
    for line in stderr.splitlines():
        if " WARN " in line or " ERROR " in line:
            line = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
            line = re.sub(r"correlation id \d+", "correlation id N", line)
            seen.setdefault(line[:240], None)
    return list(seen)


# ---------------------------------------------------------------------------------------
# Kafka's Java tools

_PP_FINAL = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def producer_performance(bootstrap: str, topic: str, records: int, size: int, acks: str,
                         throughput: float = -1, timeout_s: float = 900, log: Path | None = None) -> dict:
    """ProducerPerformance; latencies are the tool's, whole milliseconds."""
    out, err = run([str(KAFKA_SH), "tool", "ProducerPerformance", "--topic", topic,
                    "--num-records", str(records), "--record-size", str(size),
                    "--throughput", str(int(throughput)) if throughput > 0 else "-1",
                    "--producer-props", f"bootstrap.servers={bootstrap}", f"acks={acks}"],
                   timeout_s, log)
    m = _PP_FINAL.search(out)
    if not m:
        raise LoadError(f"ProducerPerformance: no summary line: {_last_words(err or out)}")
    n, rps = int(m.group(1)), float(m.group(2))
    return {
        "records": n,
        "msgs_per_s": rps,
        "mb_per_s": rps * size / 1e6,
        "avg_ms": float(m.group(4)),
        "max_ms": float(m.group(5)),
        "p50_ms": float(m.group(6)),
        "p99_ms": float(m.group(8)),
        "p999_ms": float(m.group(9)),
        "warnings": warnings_of(err),
    }


def consumer_performance(bootstrap: str, topic: str, messages: int, timeout_s: float = 600,
                         log: Path | None = None) -> dict:
    """ConsumerPerformance (subscribes with a fresh group); rate over its fetch time,
    i.e. without the group join, which Kafka delays by group.initial.rebalance.delay.ms."""
    out, err = run([str(KAFKA_SH), "tool", "ConsumerPerformance", "--bootstrap-server", bootstrap,
                    "--topic", topic, "--messages", str(messages), "--timeout", "30000", "--hide-header"],
                   timeout_s, log)
    rows = [l for l in out.splitlines() if l.count(",") >= 9]
    if not rows:
        raise LoadError(f"ConsumerPerformance: no result row: {_last_words(err or out)}")
    f = [x.strip() for x in rows[-1].split(",")]
    consumed = int(f[4])
    if consumed < messages:
        raise LoadError(f"ConsumerPerformance consumed {consumed} of {messages} records")
    return {
        "records": consumed,
        "mb_per_s": float(f[8]) * MIB / 1e6,
        "msgs_per_s": float(f[9]),
        "rebalance_ms": float(f[6]),
        "warnings": warnings_of(err),
    }


_E2E_AVG = re.compile(r"Avg latency: ([\d.]+) ms")
_E2E_PCT = re.compile(r"Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)")


def end_to_end_latency(bootstrap: str, topic: str, messages: int, acks: str, size: int,
                       timeout_s: float = 600, log: Path | None = None) -> dict:
    """EndToEndLatency: one record in flight, produce then consume it; whole ms."""
    out, err = run([str(KAFKA_SH), "tool", "EndToEndLatency", bootstrap, topic, str(messages), acks, str(size)],
                   timeout_s, log)
    a, p = _E2E_AVG.search(out), _E2E_PCT.search(out)
    if not (a and p):
        raise LoadError(f"EndToEndLatency: no summary: {_last_words(err or out)}")
    return {
        "mean_ms": float(a.group(1)),
        "p50_ms": float(p.group(1)),
        "p99_ms": float(p.group(2)),
        "p999_ms": float(p.group(3)),
        "warnings": warnings_of(err),
    }


# ---------------------------------------------------------------------------------------
# librdkafka


def rdkafka(mode: str, bootstrap: str, topic: str, timeout_s: float = 900, log: Path | None = None,
            **opts) -> dict:
    """rdkafka_load.py MODE; options as keyword arguments (linger_ms=0 → --linger-ms 0)."""
    cmd = [sys.executable, str(RDKAFKA_LOAD), mode, "--bootstrap", bootstrap, "--topic", topic]
    for k, v in opts.items():
        if v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    out, err = run(cmd, timeout_s, log)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise LoadError(f"rdkafka_load {mode}: no result: {_last_words(err or out)}") from None
    if result.get("errors"):
        result["warnings"] = [f"{result['errors']} delivery/consume errors, first: {result.get('first_error', '?')}"]
    return result


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1,
                 log: Path | None = None) -> None:
    """Explicit creation, so no load depends on auto-creation or races it."""
    rdkafka("create-topic", bootstrap, topic, timeout_s=120, log=log, partitions=partitions,
            replication_factor=replication_factor)
