"""confluent-kafka (librdkafka) against the broker at SKIFF_BOOTSTRAP.

Admin API (create/describe/alter/grow/delete topics, describe cluster), the idempotent
producer with acks=all, a two-member consumer group that rebalances while consuming,
seek and offsets_for_times. Every test creates its own topic through the admin API.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from support import OP_TIMEOUT_S, bootstrap_addresses, wait_until
from verify import Record, check_log, make_messages

# librdkafka timeouts chosen so an unresponsive broker fails a call within OP_TIMEOUT_S.
CLIENT_TIMEOUTS = {"socket.timeout.ms": 20000, "socket.connection.setup.timeout.ms": 10000}


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **CLIENT_TIMEOUTS})


def result(future, what: str):
    """The future's result within OP_TIMEOUT_S, failing with ``what`` on timeout."""
    try:
        return future.result(timeout=OP_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"timed out after {OP_TIMEOUT_S:.0f}s: {what}")


def error_code(excinfo: pytest.ExceptionInfo[KafkaException]) -> int:
    return excinfo.value.args[0].code()


def partitions_ready(admin: AdminClient, topic: str, count: int) -> bool:
    """Metadata lists ``count`` partitions of ``topic``, each with a leader."""
    md = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    return (
        md is not None
        and md.error is None
        and len(md.partitions) == count
        and all(p.leader >= 0 and p.error is None for p in md.partitions.values())
    )


def create_topic(admin: AdminClient, topic: str, partitions: int, rf: int, config: dict | None = None) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=config or {})],
        request_timeout=OP_TIMEOUT_S,
    )
    result(futures[topic], f"create topic {topic}")
    wait_until(lambda: partitions_ready(admin, topic, partitions), f"{topic} to have {partitions} led partitions")


@pytest.fixture
def topics(bootstrap: str, replication_factor: int):
    """``topics(name, partitions, config=None)`` creates a topic and deletes it after the test."""
    admin = admin_client(bootstrap)
    created: list[str] = []

    def create(name: str, partitions: int, config: dict | None = None) -> str:
        create_topic(admin, name, partitions, replication_factor, config)
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created, request_timeout=10).values():
            try:
                future.result(timeout=15)
            except Exception:  # noqa: BLE001 - cleanup only; the broker may be what failed
                pass


def describe_topic_config(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return result(admin.describe_configs([resource], request_timeout=OP_TIMEOUT_S)[resource], f"describe configs of {topic}")


def produce_all(producer: Producer, topic: str, messages: list[tuple[str, str]], **produce_kwargs) -> list:
    """Produce every message; return one delivery report (err, partition, offset, key, value) each."""
    reports = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        reports.append((err, msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **produce_kwargs)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(OP_TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages still undelivered after {OP_TIMEOUT_S:.0f}s"
    return reports


def read_partitions(bootstrap: str, topic: str, partitions: int) -> list[Record]:
    """Every record of ``topic`` up to the high watermarks observed at the start, without a group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"skiff-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **CLIENT_TIMEOUTS,
        }
    )
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S)[1] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records: list[Record] = []
        positions = {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + OP_TIMEOUT_S
        while any(positions[p] < ends[p] for p in positions) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                assert msg.error() is None, f"consume error: {msg.error()}"
                records.append(Record(msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))
                positions[msg.partition()] = msg.offset() + 1
        assert all(positions[p] >= ends[p] for p in positions), f"read stalled at {positions}, high watermarks {ends}"
        return records
    finally:
        consumer.close()


def test_admin_describe_cluster_lists_bootstrap_broker(bootstrap: str) -> None:
    admin = admin_client(bootstrap)
    cluster = result(admin.describe_cluster(request_timeout=OP_TIMEOUT_S), "describe cluster")
    assert cluster.cluster_id, "cluster id is empty"
    assert cluster.nodes, "no nodes in DescribeCluster"
    advertised = {(n.host, n.port) for n in cluster.nodes}
    assert advertised & set(bootstrap_addresses(bootstrap)), f"bootstrap {bootstrap} not among advertised nodes {advertised}"
    assert cluster.controller is not None and cluster.controller.id in {n.id for n in cluster.nodes}
    md = admin.list_topics(timeout=OP_TIMEOUT_S)
    assert md.cluster_id == cluster.cluster_id
    assert set(md.brokers) == {n.id for n in cluster.nodes}


def test_admin_topic_lifecycle_create_configure_grow_delete(bootstrap: str, replication_factor: int, unique_name) -> None:
    admin = admin_client(bootstrap)
    topic = unique_name("topic")
    create_topic(admin, topic, 3, replication_factor, {"retention.ms": "3600000"})

    again = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=replication_factor)], request_timeout=OP_TIMEOUT_S)
    with pytest.raises(KafkaException) as exc:
        result(again[topic], "create existing topic")
    assert error_code(exc) == KafkaError.TOPIC_ALREADY_EXISTS

    description = result(admin.describe_topics(TopicCollection([topic]), request_timeout=OP_TIMEOUT_S)[topic], "describe topic")
    assert description.name == topic
    assert [p.id for p in description.partitions] == [0, 1, 2]
    for p in description.partitions:
        assert p.leader is not None, f"partition {p.id} has no leader"
        assert len(p.replicas) == replication_factor
        assert p.leader.id in {r.id for r in p.isr}, f"partition {p.id}: leader not in ISR"

    config = describe_topic_config(admin, topic)
    assert config["retention.ms"].value == "3600000"
    assert config["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Kafka's topic defaults, which Skiff reports under the same names and values.
    assert config["cleanup.policy"].value == "delete"
    assert config["retention.bytes"].value == "-1"

    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.bytes", "1073741824", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    result(admin.incremental_alter_configs([resource], request_timeout=OP_TIMEOUT_S)[resource], "incremental alter configs (set)")
    config = wait_until(
        lambda: (c := describe_topic_config(admin, topic))["retention.ms"].value == "7200000" and c,
        "retention.ms=7200000 to be visible",
    )
    assert config["retention.bytes"].value == "1073741824"
    assert config["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    result(admin.incremental_alter_configs([resource], request_timeout=OP_TIMEOUT_S)[resource], "incremental alter configs (delete)")
    config = wait_until(
        lambda: (c := describe_topic_config(admin, topic))["retention.bytes"].value == "-1" and c,
        "retention.bytes to revert to its default",
    )
    assert config["retention.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert config["retention.ms"].value == "7200000", "an incremental delete of one key changed another"

    resource = ConfigResource(
        ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)]
    )
    with pytest.raises(KafkaException) as exc:
        result(admin.incremental_alter_configs([resource], request_timeout=OP_TIMEOUT_S)[resource], "alter unknown config")
    assert error_code(exc) == KafkaError.INVALID_CONFIG

    result(admin.create_partitions([NewPartitions(topic, 5)], request_timeout=OP_TIMEOUT_S)[topic], "create partitions")
    wait_until(lambda: partitions_ready(admin, topic, 5), f"{topic} to have 5 led partitions")
    with pytest.raises(KafkaException) as exc:
        result(admin.create_partitions([NewPartitions(topic, 2)], request_timeout=OP_TIMEOUT_S)[topic], "shrink partitions")
    assert error_code(exc) == KafkaError.INVALID_PARTITIONS

    result(admin.delete_topics([topic], request_timeout=OP_TIMEOUT_S)[topic], "delete topic")
    wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, f"{topic} to disappear from metadata")
    with pytest.raises(KafkaException) as exc:
        result(admin.delete_topics([topic], request_timeout=OP_TIMEOUT_S)[topic], "delete missing topic")
    assert error_code(exc) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_idempotent_producer_acks_all_reports_every_record_once(bootstrap: str, topics, unique_name, run_id: str) -> None:
    admin = admin_client(bootstrap)
    topic = topics(unique_name("topic"), 3)
    messages = make_messages(run_id, 5000, keys=40)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            **CLIENT_TIMEOUTS,
        }
    )
    reports = produce_all(producer, topic, messages)

    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"{len(errors)} failed deliveries, e.g. {errors[:3]}"
    assert len(reports) == len(messages), f"{len(reports)} delivery reports for {len(messages)} messages"
    assert sorted((k, v) for _, _, _, k, v in reports) == sorted(messages)
    reported_at = {(p, o): (k, v) for _, p, o, k, v in reports}
    assert len(reported_at) == len(reports), "two deliveries reported the same partition and offset"

    records = read_partitions(bootstrap, topic, 3)
    check_log(records, messages, contiguous_from_zero=True)
    for r in records:
        assert reported_at[(r.partition, r.offset)] == (r.key, r.value), f"stored record differs from its delivery report at {r.partition}/{r.offset}"
    for p in range(3):
        assert admin.list_topics(topic=topic, timeout=10).topics[topic].partitions[p].leader >= 0


def test_group_of_two_rebalances_and_consumes_each_record_once(bootstrap: str, topics, unique_name, run_id: str) -> None:
    """Member A consumes alone, B joins mid-way; with commits after every batch and on
    revocation, the two together see every record exactly once."""
    group = unique_name("group")
    partitions = 6
    topic = topics(unique_name("topic"), partitions)
    messages = make_messages(run_id, 6000, keys=60)
    first, second = messages[:3000], messages[3000:]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", **CLIENT_TIMEOUTS})
    assert all(r[0] is None for r in produce_all(producer, topic, first))

    class Member:
        """One group member. It handles one message per poll() and commits what it handled
        every 37 messages (a cadence that does not divide the batch sizes, so a missed
        commit shows up as duplicates), at the end of each poll round and when partitions
        are revoked: at every revocation exactly the handled records are committed."""

        def __init__(self, name: str) -> None:
            self.name = name
            self.records: list[Record] = []
            self.pending: dict[int, int] = {}  # partition -> next offset, handled, not yet committed
            self.assigned: list[list[int]] = []
            self.revocations = 0
            self.consumer = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": group,
                    "group.protocol": "classic",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    **CLIENT_TIMEOUTS,
                }
            )
            self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

        def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
            self.assigned.append(sorted(tp.partition for tp in tps))

        def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
            self.revocations += 1
            self.commit_pending()

        def commit_pending(self) -> None:
            if self.pending:
                offsets = [TopicPartition(topic, p, o) for p, o in sorted(self.pending.items())]
                self.consumer.commit(offsets=offsets, asynchronous=False)
                self.pending.clear()

        def poll(self, max_messages: int = 200) -> None:
            for i in range(max_messages):
                msg = self.consumer.poll(0.2 if i == 0 else 0)
                if msg is None:
                    break
                assert msg.error() is None, f"{self.name}: consume error {msg.error()}"
                self.records.append(Record(msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))
                self.pending[msg.partition()] = msg.offset() + 1
                if len(self.records) % 37 == 0:
                    self.commit_pending()
            self.commit_pending()

    a = Member("A")
    b = None
    try:
        deadline = time.monotonic() + 60
        while len(a.records) < 500 and time.monotonic() < deadline:
            a.poll(max_messages=50)
        assert len(a.records) >= 500, f"A alone consumed only {len(a.records)} records in 60s"
        assert len(a.records) < len(first), "A consumed everything before B joined; the rebalance would prove nothing"

        b = Member("B")
        deadline = time.monotonic() + 60
        while not (b.assigned and b.assigned[-1]) and time.monotonic() < deadline:
            a.poll(max_messages=20)
            b.poll(max_messages=20)
        assert b.assigned and b.assigned[-1], "B never got partitions after joining"
        assert a.revocations >= 1, "A's partitions were never revoked when B joined"

        assert all(r[0] is None for r in produce_all(producer, topic, second))

        total = lambda: len(a.records) + len(b.records)  # noqa: E731
        deadline = time.monotonic() + 60
        while total() < len(messages) and time.monotonic() < deadline:
            a.poll()
            b.poll()
        # Keep both members polling briefly: anything delivered now is a duplicate.
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            a.poll()
            b.poll()

        assert a.records and b.records, f"A consumed {len(a.records)}, B {len(b.records)}"
        assert set(a.assigned[-1]).isdisjoint(b.assigned[-1]), f"overlapping assignments A={a.assigned[-1]} B={b.assigned[-1]}"
        assert sorted(a.assigned[-1] + b.assigned[-1]) == list(range(partitions))
        check_log(a.records + b.records, messages, contiguous_from_zero=True)

        committed = {tp.partition: tp.offset for tp in a.consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=OP_TIMEOUT_S)}
        ends = {p: a.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S)[1] for p in range(partitions)}
        assert committed == ends, f"committed offsets {committed} differ from log ends {ends}"
    finally:
        a.consumer.close()
        if b is not None:
            b.consumer.close()


def test_seek_and_offsets_for_times(bootstrap: str, topics, unique_name, run_id: str) -> None:
    topic = topics(unique_name("topic"), 2)
    base = int(time.time() * 1000) - 600_000  # explicit CreateTime stamps, 10 ms apart
    per_partition = 200
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", **CLIENT_TIMEOUTS})
    sent = {}
    for p in range(2):
        for i in range(per_partition):
            key, value = f"k{p:03d}", f"{run_id}:k{p:03d}:{i:06d}"
            producer.produce(topic, key=key, value=value, partition=p, timestamp=base + 10 * i)
            sent[(p, i)] = (key, value, base + 10 * i)
    assert producer.flush(OP_TIMEOUT_S) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("group"), "enable.auto.commit": False, **CLIENT_TIMEOUTS})
    try:
        for p in range(2):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT_S)
            assert (low, high) == (0, per_partition)

        queries = [
            (base + 1050, 105),  # exact hit
            (base + 505, 51),  # between two stamps: the next record
            (base - 1_000_000, 0),  # before every record
            (base + 10 * per_partition + 1, -1),  # after every record: no offset
        ]
        for timestamp, expected in queries:
            found = consumer.offsets_for_times([TopicPartition(topic, p, timestamp) for p in range(2)], timeout=OP_TIMEOUT_S)
            for tp in found:
                assert tp.error is None, f"offsets_for_times error {tp.error}"
                assert tp.offset == expected, f"timestamp {timestamp - base:+d} ms on partition {tp.partition}: offset {tp.offset}, expected {expected}"

        def next_message() -> Message:
            msg = wait_until(lambda: consumer.poll(0.2), "a message after seek")
            assert msg.error() is None, f"consume error: {msg.error()}"
            return msg

        def assert_message(msg: Message, p: int, offset: int) -> None:
            key, value, ts = sent[(p, offset)]
            assert (msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()) == (p, offset, key, value)
            assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, ts)

        consumer.assign([TopicPartition(topic, 1, OFFSET_BEGINNING)])
        assert_message(next_message(), 1, 0)
        for target in (150, 7, 198):
            consumer.seek(TopicPartition(topic, 1, target))
            assert_message(next_message(), 1, target)
            assert_message(next_message(), 1, target + 1)
    finally:
        consumer.close()
