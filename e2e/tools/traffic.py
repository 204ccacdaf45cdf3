"""Continuous acks=all traffic for the operator e2e tests, checked for loss at the end.

Runs one idempotent acks=all confluent-kafka producer (``AckingProducer`` of the
cluster fault harness) against ``--bootstrap`` until ``--stop-file`` appears (or
``--seconds`` pass, or SIGTERM), then flushes, reads every partition back with a
fresh consumer and checks the acknowledgements against the log with the harness's
checker. Prints one JSON object on stdout:

    {"sent": .., "acked": .., "failed": .., "unreported": .., "violations": [..],
     "errors": [..], "max_gap_s": .., "ok": true|false}

``failed`` counts messages the client gave up on after its retries (the e2e
scenarios require 0), ``violations`` lists everything the checker found (lost,
duplicate, order, ...). Exit status 0 when the run could be checked (whatever the
verdict), 2 when the harness itself failed (the error on stderr).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "broker/tests/cluster"))

from checker import check  # noqa: E402
from workload import AckingProducer, read_all  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--rate", type=float, default=200.0, help="messages per second")
    ap.add_argument("--stop-file", type=Path, help="stop producing once this file exists")
    ap.add_argument("--seconds", type=float, default=600.0, help="stop producing after this long at most")
    ap.add_argument("--started-file", type=Path, help="created once the first message is acknowledged")
    ap.add_argument("--log", type=Path, help="librdkafka's log lines go here")
    ap.add_argument("--read-timeout", type=float, default=120.0)
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    partitions = range(args.partitions)
    producer = AckingProducer(args.bootstrap, args.topic, partitions, name="e2e", rate=args.rate,
                              log_path=args.log).start()
    began = time.monotonic()
    if args.started_file is not None:
        producer.wait_acked(1, timeout_s=120.0)
        args.started_file.touch()
    while not stop.is_set() and time.monotonic() - began < args.seconds:
        if args.stop_file is not None and args.stop_file.exists():
            break
        stop.wait(0.1)
    unreported = producer.stop(flush_timeout_s=150.0)
    full = read_all(args.bootstrap, args.topic, partitions, timeout_s=args.read_timeout, log_path=args.log)
    report = check(producer.checker_acks(), full.reads, log_end=full.ends, producers=["e2e"])
    gaps = [producer.max_ack_gap(p, began) for p in partitions]
    out = {
        "sent": producer.sent,
        "acked": producer.acked(),
        "failed": len(producer.failures),
        "failures": sorted({f.error for f in producer.failures})[:5],
        "unreported": unreported,
        "violations": [f"{kind}: {text}" for kind, texts in report.violations.items() for text in texts][:50],
        "errors": sorted(set(producer.errors))[:10],
        "max_gap_s": round(max(gaps, default=0.0), 3),
        "read_notes": full.notes,
    }
    out["ok"] = report.ok and out["failed"] == 0 and unreported == 0 and out["acked"] > 0
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - the harness failed, not the broker: say so
        print(f"traffic.py: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
