"""kafka-python (pure Python client) against the broker at SKIFF_BOOTSTRAP.

Produce with acks=all and check every record's metadata; consume in a group, commit,
close, reopen the group and resume exactly at the committed offsets: nothing re-read,
nothing skipped. Topics are created through kafka-python's own admin client.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from support import OP_TIMEOUT_S, wait_until
from verify import Record, check_log, make_messages

TIMEOUT_MS = int(OP_TIMEOUT_S * 1000)
CLIENT_TIMEOUTS = {"request_timeout_ms": 20000, "bootstrap_timeout_ms": TIMEOUT_MS}


@pytest.fixture
def topics(bootstrap: str, replication_factor: int):
    """``topics(name, partitions)`` creates a topic and deletes it after the test."""
    created: list[str] = []

    def create(name: str, partitions: int) -> str:
        create_topic(bootstrap, name, partitions, replication_factor)
        created.append(name)
        return name

    yield create
    if created:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, bootstrap_timeout_ms=10000)
            try:
                admin.delete_topics(created, timeout_ms=10000, raise_errors=False)
            finally:
                admin.close()
        except Exception:  # noqa: BLE001 - cleanup only; the broker may be what failed
            pass


def create_topic(bootstrap: str, topic: str, partitions: int, rf: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **CLIENT_TIMEOUTS)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": rf}}, timeout_ms=TIMEOUT_MS)
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": rf}}, timeout_ms=TIMEOUT_MS)

        def led_partitions() -> bool:
            (md,) = admin.describe_topics([topic])
            return md["error_code"] == 0 and len(md["partitions"]) == partitions and all(p["leader_id"] >= 0 for p in md["partitions"])

        wait_until(led_partitions, f"{topic} to have {partitions} led partitions")
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> dict[tuple[int, int], tuple[str, str]]:
    """Produce with acks=all and idempotence; return (partition, offset) -> (key, value) from the acks."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_block_ms=TIMEOUT_MS,
        delivery_timeout_ms=TIMEOUT_MS,
        **CLIENT_TIMEOUTS,
    )
    try:
        futures = [(key, value, producer.send(topic, key=key.encode(), value=value.encode())) for key, value in messages]
        producer.flush(timeout=OP_TIMEOUT_S)
        acked = {}
        for key, value, future in futures:
            md = future.get(timeout=OP_TIMEOUT_S)
            assert md.topic == topic and md.offset >= 0, f"bad record metadata {md}"
            assert (md.partition, md.offset) not in acked, f"two records acknowledged at {md.partition}/{md.offset}"
            acked[(md.partition, md.offset)] = (key, value)
        return acked
    finally:
        producer.close(timeout=OP_TIMEOUT_S)


def group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **CLIENT_TIMEOUTS,
    )


def consume(consumer: KafkaConsumer, until: int, max_records: int = 100, timeout_s: float = 60) -> list[Record]:
    """Poll until at least ``until`` records arrived (or the deadline), committing after every poll."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < until and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=max_records)
        for tp, msgs in batch.items():
            records.extend(Record(tp.partition, m.offset, m.key.decode(), m.value.decode()) for m in msgs)
        if batch:
            consumer.commit(timeout_ms=TIMEOUT_MS)  # commits the positions after what poll returned
    return records


def test_produce_acks_all_then_read_back_by_assignment(bootstrap: str, topics, unique_name, run_id: str) -> None:
    topic = topics(unique_name("topic"), 3)
    messages = make_messages(run_id, 3000, keys=30)
    acked = produce(bootstrap, topic, messages)
    assert sorted(acked.values()) == sorted(messages)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **CLIENT_TIMEOUTS)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        assert sum(ends.values()) == len(messages), f"log end offsets {ends} for {len(messages)} records"
        records: list[Record] = []
        deadline = time.monotonic() + OP_TIMEOUT_S
        while len(records) < len(messages) and time.monotonic() < deadline:
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                records.extend(Record(tp.partition, m.offset, m.key.decode(), m.value.decode()) for m in msgs)
        check_log(records, messages, contiguous_from_zero=True)
        for r in records:
            assert acked[(r.partition, r.offset)] == (r.key, r.value), f"record at {r.partition}/{r.offset} differs from its ack"
    finally:
        consumer.close()


def test_group_resumes_from_committed_offsets_after_close(bootstrap: str, topics, unique_name, run_id: str) -> None:
    group = unique_name("group")
    partitions = 3
    topic = topics(unique_name("topic"), partitions)
    messages = make_messages(run_id, 3000, keys=30)
    produce(bootstrap, topic, messages)
    tps = [TopicPartition(topic, p) for p in range(partitions)]

    first = group_consumer(bootstrap, topic, group)
    try:
        before = consume(first, until=len(messages) // 2, max_records=50)
        assert len(messages) // 2 <= len(before) < len(messages), f"first member consumed {len(before)} records"
        committed = {tp.partition: first.committed(tp, timeout_ms=TIMEOUT_MS) for tp in tps}
    finally:
        first.close(autocommit=False)
    # What was consumed per partition is exactly what was committed (kafka-python also
    # commits position 0 for an assigned partition it has not read from yet).
    for p in range(partitions):
        offsets = [r.offset for r in before if r.partition == p]
        assert (committed[p] or 0) == (max(offsets) + 1 if offsets else 0), f"partition {p}: committed {committed[p]} after reading {len(offsets)}"

    second = group_consumer(bootstrap, topic, group)
    try:
        after = consume(second, until=len(messages) - len(before))
        # Poll on: anything more would be re-delivery.
        extra = consume(second, until=1, timeout_s=2)
        assert not extra, f"{len(extra)} records delivered after the log was fully read, e.g. {extra[:3]}"
        ends = second.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        final = {tp.partition: second.committed(tp, timeout_ms=TIMEOUT_MS) for tp in tps}
    finally:
        second.close(autocommit=False)

    for p in range(partitions):
        resumed = [r.offset for r in after if r.partition == p]
        if resumed:
            assert min(resumed) == (committed[p] or 0), f"partition {p}: resumed at {min(resumed)}, committed {committed[p]}"
    check_log(before + after, messages, contiguous_from_zero=True)
    assert final == {tp.partition: ends[tp] for tp in tps}, f"final commits {final} differ from log ends {ends}"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **CLIENT_TIMEOUTS)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic} == final
    finally:
        admin.close()
