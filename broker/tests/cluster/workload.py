"""Real-client workloads for the fault scenarios.

- ``AckingProducer``: an idempotent acks=all confluent-kafka producer in its own
  thread, writing ``checker.payload`` messages round-robin over chosen partitions at a
  steady rate, and recording every delivery report: acknowledged (partition, offset,
  payload, when) or failed (payload, error).
- ``GroupConsumer``: a consumer group of several confluent-kafka consumers (one thread
  each) reading from the beginning and committing offsets, until it has seen every
  acknowledged message or a bound expires.
- ``read_all``: a fresh consumer reading every partition from offset 0 to its high
  watermark (the checker's view of the log).
- ``RawProduce``: one Produce request written on a TCP connection pinned to one broker
  (for the stale-leader scenario: the request sits in the socket of a stopped broker).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from checker import Ack, Read, payload

from cluster import HarnessError, wait_until


def client_logger(path: Path | None, name: str) -> logging.Logger:
    """A logger writing librdkafka's log lines to ``path`` (not to the test output)."""
    log = logging.getLogger(f"skiff.cluster.{name}.{uuid.uuid4().hex[:6]}")
    log.propagate = False
    log.setLevel(logging.DEBUG if os.environ.get("SKIFF_CLIENT_DEBUG") else logging.INFO)
    if path is not None:
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter(f"%(asctime)s {name} %(message)s"))
        log.addHandler(h)
    else:
        log.addHandler(logging.NullHandler())
    return log


@dataclass
class TimedAck:
    partition: int
    offset: int
    payload: str
    at: float  # time.monotonic() when the delivery report arrived


@dataclass
class Failure:
    partition: int
    payload: str
    error: str
    at: float


class AckingProducer:
    """Idempotent acks=all producer thread with a record of every delivery report.

    ``rate``: messages per second (0: as fast as the client takes them); ``limit``: stop
    producing after that many messages. ``config`` overrides the client settings.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: Iterable[int], *, name: str = "p1",
                 rate: float = 400.0, limit: int | None = None, config: dict | None = None,
                 log_path: Path | None = None):
        self.topic, self.name = topic, name
        self.partitions = list(partitions)
        self.rate, self.limit = rate, limit
        self.acks: list[TimedAck] = []
        self.failures: list[Failure] = []
        self.errors: list[str] = []  # client-level errors (error_cb), fatal ones included
        self.sent = 0
        self.remaining_after_flush: int | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._flush_timeout_s = 60.0
        self.config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # delivery.timeout.ms: retries go on this long before a message is failed
            "message.timeout.ms": 120_000,
            "request.timeout.ms": 5_000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 3_000,
            "topic.metadata.refresh.interval.ms": 2_000,
            "error_cb": self._on_error,
            "logger": client_logger(log_path, f"producer-{name}"),
            # SKIFF_CLIENT_DEBUG: librdkafka debug contexts (e.g. "eos,protocol") into the client log
            **({"debug": os.environ["SKIFF_CLIENT_DEBUG"]} if os.environ.get("SKIFF_CLIENT_DEBUG") else {}),
            **(config or {}),
        }
        self._producer = Producer(self.config)
        self._thread = threading.Thread(target=self._run, name=f"producer-{name}", daemon=True)

    # -- thread ----------------------------------------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        with self._lock:
            self.errors.append(f"{'FATAL ' if err.fatal() else ''}{err}")

    def _on_delivery(self, err, msg) -> None:
        now = time.monotonic()
        value = msg.value().decode()
        with self._cond:
            if err is None:
                offset = msg.offset()  # None when the report carries no offset
                self.acks.append(TimedAck(msg.partition(), -1 if offset is None else offset, value, now))
            else:
                self.failures.append(Failure(msg.partition(), value, str(err), now))
            self._cond.notify_all()

    def _run(self) -> None:
        p = self._producer
        started = time.monotonic()
        seq = 0
        while not self._stop.is_set() and (self.limit is None or seq < self.limit):
            partition = self.partitions[seq % len(self.partitions)]
            try:
                p.produce(self.topic, value=payload(self.name, seq), partition=partition,
                          on_delivery=self._on_delivery)
            except BufferError:
                p.poll(0.05)
                continue
            except KafkaException as e:  # a fatal idempotence error: nothing more can be sent
                self._on_error(e.args[0])
                break
            seq += 1
            with self._lock:
                self.sent = seq
            p.poll(0)
            if self.rate:
                ahead = seq / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    p.poll(min(ahead, 0.1))
        self.remaining_after_flush = p.flush(self._flush_timeout_s)

    # -- control -----------------------------------------------------------------------------

    def start(self) -> "AckingProducer":
        self._thread.start()
        return self

    def stop(self, flush_timeout_s: float = 60.0) -> int:
        """Stop producing, flush (bounded); returns how many messages got no report."""
        self._flush_timeout_s = flush_timeout_s
        self._stop.set()
        self._thread.join(flush_timeout_s + 15)
        if self._thread.is_alive():
            raise HarnessError(f"producer {self.name} did not finish flushing within {flush_timeout_s:.0f}s")
        return self.remaining_after_flush or 0

    def join(self, timeout_s: float) -> int:
        """Wait for a producer with a ``limit`` to finish; returns messages without a report."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise HarnessError(f"producer {self.name} still running after {timeout_s:.0f}s "
                               f"({self.acked()} acked of {self.sent} sent)")
        return self.remaining_after_flush or 0

    # -- what happened -----------------------------------------------------------------------

    def acked(self, partition: int | None = None, since: float | None = None) -> int:
        with self._lock:
            return sum(1 for a in self.acks
                       if (partition is None or a.partition == partition) and (since is None or a.at >= since))

    def wait_acked(self, n: int, partition: int | None = None, since: float | None = None,
                   timeout_s: float = 30.0) -> None:
        """Wait until at least ``n`` acks (of ``partition``, after ``since``) arrived."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                got = sum(1 for a in self.acks
                          if (partition is None or a.partition == partition) and (since is None or a.at >= since))
                if got >= n:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    where = "" if partition is None else f" on partition {partition}"
                    raise HarnessError(
                        f"producer {self.name}: {got} of {n} acks{where} within {timeout_s:.0f}s "
                        f"(sent {self.sent}, failed {len(self.failures)}, client errors {self.errors[-3:]})")
                self._cond.wait(min(left, 0.2))

    def first_ack_after(self, t: float, partition: int, timeout_s: float) -> TimedAck:
        """The first ack of ``partition`` that arrived at or after ``t`` (waits for it)."""
        self.wait_acked(1, partition=partition, since=t, timeout_s=timeout_s)
        with self._lock:
            return min((a for a in self.acks if a.partition == partition and a.at >= t), key=lambda a: a.at)

    def max_ack_gap(self, partition: int, since: float, until: float | None = None) -> float:
        """The longest time between consecutive acks of ``partition`` in [since, until]."""
        with self._lock:
            times = sorted(a.at for a in self.acks if a.partition == partition
                           and a.at >= since and (until is None or a.at <= until))
        points = [since, *times] + ([until] if until is not None else [])
        return max((b - a for a, b in zip(points, points[1:])), default=0.0)

    def unreported(self) -> int:
        """Messages produced that have no delivery report yet (queued or in flight)."""
        return len(self._producer)

    def checker_acks(self) -> list[Ack]:
        with self._lock:
            return [Ack(a.partition, a.offset, a.payload) for a in self.acks]

    def summary(self) -> str:
        with self._lock:
            errors = sorted(set(self.errors))
            unplaced = sum(1 for a in self.acks if a.offset < 0)
            return (f"producer {self.name}: sent {self.sent}, acked {len(self.acks)}"
                    + (f" ({unplaced} without an offset)" if unplaced else "")
                    + f", failed {len(self.failures)}"
                    + (f" (e.g. {self.failures[0].error})" if self.failures else "")
                    + (f", unreported {self.remaining_after_flush}" if self.remaining_after_flush else "")
                    + (f", client errors {errors[:3]}" if errors else ""))


class GroupConsumer:
    """``members`` consumers in one group, each in a thread, from the beginning of the
    topic, committing their positions (synchronously) every ``commit_every`` messages
    and at least every second, and once more when stopped."""

    def __init__(self, bootstrap: str, topic: str, *, group: str | None = None, members: int = 2,
                 commit_every: int = 200, log_path: Path | None = None, config: dict | None = None):
        self.topic = topic
        self.group = group or f"check-{uuid.uuid4().hex[:8]}"
        self.reads: list[Read] = []
        self.commit_errors: list[str] = []
        self.member_errors: list[str] = []
        self._lock = threading.Lock()
        self._seen: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._commit_every = commit_every
        self.config = {
            "bootstrap.servers": bootstrap,
            "group.id": self.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 100,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 3_000,
            "topic.metadata.refresh.interval.ms": 2_000,
            "logger": client_logger(log_path, f"group-{self.group}"),
            **(config or {}),
        }
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"member-{i}", daemon=True)
                         for i in range(members)]

    def _commit(self, c: Consumer, attempts: int = 1) -> None:
        for i in range(attempts):
            try:
                c.commit(asynchronous=False)
                return
            except KafkaException as e:
                err = e.args[0]
                if err.code() == KafkaError._NO_OFFSET:  # nothing consumed since the last commit
                    return
                with self._lock:
                    self.commit_errors.append(str(err))
                time.sleep(0.2 * (i + 1))

    def _run(self, member: int) -> None:
        c = Consumer({**self.config, "client.id": f"member-{member}"})
        try:
            # Commit what was consumed before partitions are taken away by a
            # rebalance (a member joining or leaving), as a Kafka consumer should:
            # afterwards commit() has nothing assigned to commit.
            c.subscribe([self.topic], on_revoke=lambda consumer, _: self._commit(consumer, attempts=3))
            uncommitted, last_commit = 0, time.monotonic()
            while not self._stop.is_set():
                msg = c.poll(0.2)
                if msg is not None:
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            with self._lock:
                                self.member_errors.append(str(msg.error()))
                    else:
                        r = Read(msg.partition(), msg.offset(), msg.value().decode())
                        with self._lock:
                            self.reads.append(r)
                            self._seen.add((r.partition, r.offset))
                        uncommitted += 1
                if uncommitted and (uncommitted >= self._commit_every or time.monotonic() - last_commit > 1.0):
                    self._commit(c)
                    uncommitted, last_commit = 0, time.monotonic()
            if uncommitted:
                self._commit(c, attempts=10)
        finally:
            c.close()

    def start(self) -> "GroupConsumer":
        for t in self._threads:
            t.start()
        return self

    def wait_seen(self, positions: Iterable[tuple[int, int]], timeout_s: float = 60.0) -> None:
        """Wait until the group has delivered every (partition, offset) of ``positions``."""
        want = set(positions)

        def missing():
            with self._lock:
                return want - self._seen

        try:
            wait_until(lambda: not missing(), f"consumer group {self.group} to read {len(want)} acknowledged messages",
                       timeout_s, 0.2)
        except HarnessError as e:
            left = sorted(missing())
            raise HarnessError(f"{e}: {len(left)} not read, e.g. {left[:5]}; member errors {self.member_errors[-3:]}") \
                from None

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise HarnessError(f"consumer group {self.group}: {alive} did not stop within {timeout_s:.0f}s")

    def committed(self, bootstrap: str, partitions: Iterable[int], timeout_s: float = 15.0) -> dict[int, int]:
        """The group's committed offsets (OffsetFetch through a client outside the group)."""
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": self.group, "enable.auto.commit": False,
                      "logger": self.config["logger"]})
        try:
            got = c.committed([TopicPartition(self.topic, p) for p in partitions], timeout=timeout_s)
            return {tp.partition: tp.offset for tp in got if tp.offset >= 0}
        finally:
            c.close()

    def summary(self) -> str:
        with self._lock:
            return (f"group {self.group}: {len(self.reads)} reads ({len(self._seen)} distinct offsets), "
                    f"commit errors {len(self.commit_errors)}"
                    + (f" e.g. {self.commit_errors[0]}" if self.commit_errors else ""))


@dataclass
class FullRead:
    reads: list[Read] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # anomalies seen while reading


def read_all(bootstrap: str, topic: str, partitions: Iterable[int], *, timeout_s: float = 60.0,
             log_path: Path | None = None, rounds: int = 3) -> FullRead:
    """Every message of every partition, from offset 0 to the high watermark, by a fresh
    consumer outside any group (assign, no commits). The watermarks are asked again
    after reading, up to ``rounds`` times, and the read goes on while they grow (a
    first answer from a broker with a stale view is too low)."""
    partitions = list(partitions)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"full-read-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # offset 0 out of range must fail the read, not silently jump to the end
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
        "socket.connection.setup.timeout.ms": 3_000,
        "reconnect.backoff.max.ms": 500,
        "logger": client_logger(log_path, "full-read"),
    })
    out = FullRead()
    try:
        deadline = time.monotonic() + timeout_s

        def high_watermark(p: int) -> int:
            def query():
                try:
                    return c.get_watermark_offsets(TopicPartition(topic, p), timeout=5.0)
                except KafkaException as e:  # e.g. the client dropped a dead broker mid-request
                    if e.args[0].fatal():
                        raise
                    return None
            return wait_until(query, f"the high watermark of {topic}-{p}", max(1.0, deadline - time.monotonic()),
                              0.2)[1]

        out.ends = {p: high_watermark(p) for p in partitions}
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        position = {p: 0 for p in partitions}
        for round_ in range(rounds):
            while any(position[p] < out.ends[p] for p in partitions):
                if time.monotonic() > deadline:
                    short = {p: (position[p], out.ends[p]) for p in partitions if position[p] < out.ends[p]}
                    raise HarnessError(f"full read of {topic} did not reach the high watermarks within "
                                       f"{timeout_s:.0f}s: (position, end) {short}")
                msg = c.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    err = msg.error()
                    if err.fatal() or err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
                        raise HarnessError(f"full read of {topic}: {err}")
                    continue  # transient (a broker went away); the deadline bounds the read
                if msg.offset() >= out.ends[msg.partition()]:
                    continue  # beyond the watermark taken; read again below if it moved
                out.reads.append(Read(msg.partition(), msg.offset(), msg.value().decode()))
                position[msg.partition()] = msg.offset() + 1
            # Ask again: nothing is written any more, so a higher answer means the first
            # came from a broker with a stale view; read on to the higher end.
            again = {p: high_watermark(p) for p in partitions}
            lower = {p: (out.ends[p], again[p]) for p in partitions if again[p] < out.ends[p]}
            if lower:
                out.notes.append(f"high watermark went down between two queries (first, second): {lower}")
            if all(again[p] <= out.ends[p] for p in partitions) or round_ == rounds - 1:
                break
            out.notes.append(f"high watermarks moved from {out.ends} to {again} during the read")
            out.ends = {p: max(out.ends[p], again[p]) for p in partitions}
            c.assign([TopicPartition(topic, p, position[p]) for p in partitions])
    finally:
        c.close()
    for note in out.notes:
        print(f"full read of {topic}: {note}")
    return out


class RawProduce:
    """One Produce request (v3, acks=-1, a non-idempotent batch built by kafka-python's
    record encoder) on a TCP connection opened to one broker in advance.

    ``connect()`` while the broker runs; ``send()`` may be called while it is stopped
    (the request waits in the kernel's socket buffer and is the first thing the broker
    reads when continued); ``response()`` waits for the answer.
    """

    API_PRODUCE, VERSION = 0, 3

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.correlation_id = 0x5CF0

    def connect(self, timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout_s)

    def send(self, topic: str, partition: int, values: list[str], *, timeout_ms: int = 5_000) -> None:
        from kafka.record.default_records import DefaultRecordBatchBuilder

        b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                      producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
        now = int(time.time() * 1000)
        for i, v in enumerate(values):
            b.append(i, timestamp=now, key=None, value=v.encode(), headers=[])
        records = bytes(b.build())
        client_id = b"skiff-stale-probe"
        t = topic.encode()
        body = (struct.pack(">hhih", self.API_PRODUCE, self.VERSION, self.correlation_id, len(client_id)) + client_id
                + struct.pack(">h", -1)          # transactional_id: null
                + struct.pack(">hi", -1, timeout_ms)  # acks=all, timeout
                + struct.pack(">ih", 1, len(t)) + t
                + struct.pack(">ii", 1, partition)
                + struct.pack(">i", len(records)) + records)
        self.sock.sendall(struct.pack(">i", len(body)) + body)

    def response(self, timeout_s: float) -> tuple[int, int]:
        """(error code, base offset) of the single partition in the answer."""
        self.sock.settimeout(timeout_s)
        size = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(size)
        corr, topics = struct.unpack_from(">ii", data, 0)
        if corr != self.correlation_id or topics != 1:
            raise HarnessError(f"unexpected Produce response: correlation {corr}, {topics} topics")
        pos = 8
        (name_len,) = struct.unpack_from(">h", data, pos)
        pos += 2 + name_len
        (parts,) = struct.unpack_from(">i", data, pos)
        pos += 4
        _partition, error, base_offset = struct.unpack_from(">ihq", data, pos)
        return error, base_offset

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed before the Produce response")
            buf += chunk
        return buf

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


#: Kafka error codes the stale-leader scenario may see, by number.
ERROR_NAMES = {
    0: "NONE", 6: "NOT_LEADER_OR_FOLLOWER", 7: "REQUEST_TIMED_OUT", 19: "NOT_ENOUGH_REPLICAS",
    20: "NOT_ENOUGH_REPLICAS_AFTER_APPEND", 74: "FENCED_LEADER_EPOCH", 3: "UNKNOWN_TOPIC_OR_PARTITION",
    8: "BROKER_NOT_AVAILABLE", 5: "LEADER_NOT_AVAILABLE",
}
