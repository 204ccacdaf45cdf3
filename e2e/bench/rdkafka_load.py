#!/usr/bin/env python3
"""librdkafka load generator (confluent-kafka): the client family next to Kafka's Java tools.

It knows nothing about which broker it talks to. Each mode prints one JSON object on the
last line of stdout; diagnostics go to stderr. MB = 10^6 bytes; latencies in ms.

  create-topic  --topic T [--partitions P]
  produce       --topic T --count N --size S --acks A [--rate MSGS_PER_S] [--linger-ms L]
                latency per message = produce() call to delivery report (librdkafka's
                own Message.latency(), microsecond resolution); at a fixed --rate the
                records of the first --warmup seconds are left out of the percentiles
  consume       --topic T --count N
                assigned partitions from the beginning, no group join; timed from the
                first record received to the last; fetch.queue.backoff.ms 10 (see
                CONSUME_QUEUE_BACKOFF_MS)
  e2e           --topic T --rate R --seconds D --size S --acks A [--warmup W]
                a producer at a fixed rate and a consumer in the same process; latency =
                consumer receive time - send time carried in the record (one monotonic clock)

Client settings are librdkafka's defaults except what is named on the command line.
"""
import argparse
import json
import os
import struct
import sys
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Bounds so a broker that stops answering cannot hang the benchmark.
FLUSH_TIMEOUT_S = 120
IDLE_TIMEOUT_S = 15


def percentiles(values_s: list[float]) -> dict:
    """Nearest-rank p50/p99/p99.9, mean and max of latencies given in seconds, in ms."""
    if not values_s:
        return {}
    v = sorted(values_s)

    def rank(p: float) -> float:
        return v[min(len(v) - 1, max(0, int(p * len(v) + 0.5) - 1))] * 1e3

    return {
        "samples": len(v),
        "p50_ms": rank(0.50),
        "p99_ms": rank(0.99),
        "p999_ms": rank(0.999),
        "mean_ms": sum(v) / len(v) * 1e3,
        "max_ms": v[-1] * 1e3,
    }


def create_topic(args) -> dict:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    fut = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=args.replication_factor)],
        request_timeout=30,
    )[args.topic]
    fut.result(timeout=60)
    # Wait until the topic's leaders are known, so the first produce does not race creation.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
        if md is not None and md.error is None and md.partitions and all(p.leader >= 0 for p in md.partitions.values()):
            return {"topic": args.topic, "partitions": len(md.partitions)}
        time.sleep(0.05)
    raise RuntimeError(f"topic {args.topic} has no leader 30 s after creation")


class Deliveries:
    """Delivery-report bookkeeping shared by the produce modes."""

    def __init__(self, skip: int = 0) -> None:
        self.latencies: list[float] = []
        self.delivered = 0
        self.skip = skip  # the first records' latencies include connecting: not counted
        self.errors = 0
        self.first_error = ""

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.errors += 1
            if not self.first_error:
                self.first_error = str(err)
        else:
            self.delivered += 1
            if self.delivered > self.skip:
                self.latencies.append(msg.latency())


def wait_until(p: Producer, due: float) -> None:
    """Serve delivery reports until `due` (perf_counter).

    Message.latency() is taken when the delivery report is served, so reports must not
    wait: poll() blocks with millisecond resolution, below that short sleeps and
    non-blocking polls keep the error under ~0.2 ms."""
    while (wait := due - time.perf_counter()) > 0:
        if wait >= 0.002:
            p.poll(wait - 0.001)
        else:
            p.poll(0)
            time.sleep(min(wait, 0.0002))


def producer(args, linger_ms) -> Producer:
    conf = {"bootstrap.servers": args.bootstrap, "acks": str(args.acks)}
    if linger_ms is not None:
        conf["linger.ms"] = linger_ms
    return Producer(conf)


def produce(args) -> dict:
    p = producer(args, args.linger_ms)
    d = Deliveries(skip=int(args.rate * args.warmup) if args.rate else 0)
    payload = os.urandom(args.size)
    rate = args.rate
    start = time.perf_counter()
    for i in range(args.count):
        if rate:
            wait_until(p, start + i / rate)
        while True:
            try:
                p.produce(args.topic, payload, on_delivery=d)
                break
            except BufferError:  # local queue full: let deliveries drain it
                p.poll(0.001)
        if rate or i & 1023 == 0:  # unthrottled, only throughput counts: poll less
            p.poll(0)
    left = p.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    ok = d.delivered
    return {
        "records": ok,
        "not_delivered": left,
        "errors": d.errors,
        "first_error": d.first_error,
        "seconds": elapsed,
        "msgs_per_s": ok / elapsed,
        "mb_per_s": ok * args.size / elapsed / 1e6,
        **percentiles(d.latencies),
    }


def consumer(args, **overrides) -> Consumer:
    return Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"bench-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **overrides,
    })


# librdkafka stops fetching for fetch.queue.backoff.ms (default 1000) whenever its
# local queue (queued.max.messages.kbytes, 64 MiB) is full, i.e. whenever the broker
# delivers faster than this Python loop drains. In a run of a few hundred MB that one
# pause decides the figure and penalises the faster broker; 10 ms keeps the flow
# control and drops the pause. The same for both brokers.
CONSUME_QUEUE_BACKOFF_MS = 10


def assign_from_beginning(c: Consumer, topic: str) -> None:
    md = c.list_topics(topic, timeout=30).topics[topic]
    if md.error is not None:
        raise KafkaException(md.error)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])


def consume(args) -> dict:
    c = consumer(args, **{"fetch.queue.backoff.ms": CONSUME_QUEUE_BACKOFF_MS})
    try:
        assign_from_beginning(c, args.topic)
        n = nbytes = errors = 0
        first = last = 0.0
        idle_since = time.monotonic()
        while n < args.count and time.monotonic() - idle_since < IDLE_TIMEOUT_S:
            # consume() waits until it has num_messages or the timeout passed: never ask
            # for more than are left, or the last batch would wait out the timeout.
            batch = c.consume(num_messages=min(10000, args.count - n), timeout=0.5)
            if not batch:
                continue
            now = time.perf_counter()
            idle_since = time.monotonic()
            for m in batch:
                if m.error() is not None:
                    errors += 1
                    continue
                n += 1
                nbytes += len(m)
            if not first:
                first = now
            last = time.perf_counter()
    finally:
        c.close()
    elapsed = last - first
    if n < args.count:
        raise RuntimeError(f"consumed {n} of {args.count} records before {IDLE_TIMEOUT_S} s without data")
    return {
        "records": n,
        "errors": errors,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed if elapsed > 0 else 0.0,
        "mb_per_s": nbytes / elapsed / 1e6 if elapsed > 0 else 0.0,
    }


def e2e(args) -> dict:
    count = int(args.rate * args.seconds)
    warmup = int(args.rate * args.warmup)
    lat: list[float] = []
    received = [0]
    errors = [0]
    stop = threading.Event()
    c = consumer(args)
    assign_from_beginning(c, args.topic)

    def consume_loop() -> None:
        while not stop.is_set() and received[0] < count:
            # poll(), not consume(n): consume waits for n records or its timeout.
            m = c.poll(0.1)
            now = time.monotonic_ns()
            if m is None:
                continue
            if m.error() is not None:
                errors[0] += 1
                continue
            seq, sent = struct.unpack_from(">qq", m.value())
            received[0] += 1
            if seq >= warmup:
                lat.append((now - sent) / 1e9)

    t = threading.Thread(target=consume_loop, daemon=True)
    t.start()
    p = producer(args, args.linger_ms)
    d = Deliveries()
    pad = os.urandom(max(0, args.size - 16))
    start = time.perf_counter()
    for i in range(count):
        wait_until(p, start + i / args.rate)
        p.produce(args.topic, struct.pack(">qq", i, time.monotonic_ns()) + pad, on_delivery=d)
        p.poll(0)
    p.flush(FLUSH_TIMEOUT_S)
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while received[0] < count and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(5)
    c.close()
    if received[0] < count:
        raise RuntimeError(f"received {received[0]} of {count} records")
    return {
        "records": received[0],
        "errors": errors[0] + d.errors,
        "first_error": d.first_error,
        "offered_msgs_per_s": args.rate,
        **percentiles(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["create-topic", "produce", "consume", "e2e"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 = as fast as possible")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="e2e, and produce at a fixed rate: seconds of samples left out of the percentiles")
    ap.add_argument("--linger-ms", type=int, default=None)
    args = ap.parse_args()
    if args.mode == "e2e" and (args.rate <= 0 or args.size < 16):
        ap.error("e2e needs --rate > 0 and --size >= 16")
    result = {"create-topic": create_topic, "produce": produce, "consume": consume, "e2e": e2e}[args.mode](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line the orchestrator can put in a table cell
        print(f"rdkafka_load: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
