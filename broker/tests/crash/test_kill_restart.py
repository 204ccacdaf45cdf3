"""kill -9 the broker while an idempotent acks=all producer is writing, restart it on
the same data directory, and check with a real client (confluent-kafka) that:

- every acknowledged message is in the log, at the offset it was acknowledged with;
- no offset holds two different messages (offsets are never reused after the restart);
- no message appears twice (idempotence survives the restart: producer state is
  rebuilt from the log, so retried batches are deduplicated).

Needs SKIFF_BROKER_BIN (the skiff-broker binary). Runs a broker on free loopback ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def three_free_ports() -> tuple[int, int, int]:
    """Distinct free ports: all three stay bound until each is chosen, or the
    kernel may hand one out twice."""
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for s in (a, b, c):
            s.bind(("127.0.0.1", 0))
        return a.getsockname()[1], b.getsockname()[1], c.getsockname()[1]


class Broker:
    """A skiff-broker process on fixed loopback ports and a data directory."""

    def __init__(self, binary: str, data_dir: Path):
        self.binary, self.data_dir = binary, data_dir
        self.port, self.admin_port, self.controller_port = three_free_ports()
        self.proc: subprocess.Popen | None = None
        self.log = open(data_dir.parent / "broker.log", "ab")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--data-dir", str(self.data_dir), "--listen", self.bootstrap,
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             "--controller-listen", f"127.0.0.1:{self.controller_port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, f"broker exited with {self.proc.returncode}"
                time.sleep(0.02)
        raise TimeoutError("broker did not start within 20 s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def broker():
    binary = os.environ.get("SKIFF_BROKER_BIN")
    if not binary:
        pytest.fail("SKIFF_BROKER_BIN is not set", pytrace=False)
    with tempfile.TemporaryDirectory() as tmp:
        b = Broker(binary, Path(tmp) / "data")
        b.start()
        try:
            yield b
        finally:
            b.stop()


def test_acknowledged_writes_survive_kill9_and_offsets_are_not_reused(broker: Broker):
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=30)

    acked: dict[str, tuple[int, int]] = {}   # value -> (partition, offset)
    failed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        value = msg.value().decode()
        with lock:
            if err is None:
                acked[value] = (msg.partition(), msg.offset())
            else:
                failed.append(value)

    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 60000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
    })

    def produce_loop():
        i = 0
        while not stop.is_set() and i < 200_000:
            value = f"m{i:07d}"
            try:
                producer.produce(topic, key=f"k{i % 50}", value=value, on_delivery=on_delivery)
                i += 1
            except BufferError:
                producer.poll(0.05)
                continue
            producer.poll(0)
            if i % 100 == 0:
                time.sleep(0.001)

    t = threading.Thread(target=produce_loop)
    t.start()
    time.sleep(2.0)
    with lock:
        before = len(acked)
    broker.kill9()
    time.sleep(0.5)
    broker.start()
    time.sleep(2.0)
    stop.set()
    t.join(timeout=30)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages still undelivered after flush"
    assert before > 0, "nothing was acknowledged before the kill"
    assert len(acked) > before, "nothing was acknowledged after the restart"

    # Read everything back.
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"verify-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    ends = {}
    for p in range(PARTITIONS):
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    stored: dict[tuple[int, int], str] = {}
    seen_values: dict[str, tuple[int, int]] = {}
    per_partition = {p: 0 for p in range(PARTITIONS)}
    duplicates = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(per_partition[p] < ends[p] for p in range(PARTITIONS)):
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            continue
        where = (msg.partition(), msg.offset())
        value = msg.value().decode()
        assert where not in stored, f"offset {where} delivered twice"
        stored[where] = value
        per_partition[msg.partition()] += 1
        if value in seen_values:
            duplicates.append((value, seen_values[value], where))
        seen_values[value] = where
    consumer.close()

    missing = [(v, w) for v, w in acked.items() if stored.get(w) != v]
    assert not missing, f"{len(missing)} acknowledged messages lost or moved, e.g. {missing[:5]}"
    assert not duplicates, f"{len(duplicates)} duplicates, e.g. {duplicates[:5]}"
    for p in range(PARTITIONS):
        offsets = sorted(o for (pp, o) in stored if pp == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets have gaps"
    print(f"acked {len(acked)} ({before} before the kill), failed {len(failed)}, stored {len(stored)}")
