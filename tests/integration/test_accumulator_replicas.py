"""Two accumulator replicas on one topic, as the roles deploy them: real processes, the real broker.

Each replica reads every partition from the offsets in its own state and holds the whole total; each
tells its own consumer group its position (lag per instance); only the one with SUMFLOW_DLQ_WRITER=true
produces invalid records to the DLQ, the other skips them the same way without producing them.
"""

from __future__ import annotations

import subprocess
import uuid

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from harness.kafka import ensure_jars, java_binary
from harness.processes import AccumulatorProcess, ServiceError
from harness.topics import read_records
from tests.fixtures.event_records import event_value

pytestmark = pytest.mark.timeout(600)

PARTITIONS = 3
VALID = 600


def _invalid_records(rid: str) -> list[bytes | None]:
    """One record of each kind an accumulator cannot apply (the reasons of domain/events.py)."""
    return [
        b"{not json",
        orjson.dumps({"v": 1, "request_id": rid, "first_number": 1}),
        orjson.dumps({"v": 1, "request_id": rid, "first_number": "1", "second_number": 2, "result": 3}),
        event_value(rid, 1, 2, result=4),
        None,
    ]


def _log_messages(process: AccumulatorProcess, message: str) -> list[dict]:
    return [doc for doc in process.log_lines() if doc.get("msg") == message]


def test_two_replicas_hold_the_same_exact_total_one_dlq_copy_and_their_own_groups(
    kafka_broker, topic_factory, tmp_path
):
    bootstrap = kafka_broker.bootstrap
    topic = topic_factory(partitions=PARTITIONS, prefix="repl")
    dlq = topic_factory(partitions=1, prefix="repl-dlq")
    groups = {"writer": f"g-{topic}-writer", "reader": f"g-{topic}-reader"}
    replicas = {
        name: AccumulatorProcess.for_broker(
            bootstrap,
            topic,
            tmp_path / name,
            dlq_topic=dlq,
            consumer_group=groups[name],
            SUMFLOW_DLQ_WRITER="true" if name == "writer" else "false",
            SUMFLOW_HTTP_THREADS="2",
        )
        for name in ("writer", "reader")
    }
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for replica in replicas.values():
            replica.start(timeout=120)
        # invalid records first on every partition, then valid events after them on each: once both
        # totals count every valid event, every invalid record is behind both replicas' committed offsets
        invalid: list[tuple[int, bytes | None]] = []
        for partition in range(PARTITIONS):
            for value in _invalid_records(str(uuid.uuid4())):
                invalid.append((partition, value))
                producer.send(topic, value=value, key=f"bad-{partition}".encode(), partition=partition)
        expected = 0
        for i in range(VALID):
            producer.send(topic, value=event_value(str(uuid.uuid4()), i, 2 * i + 1), partition=i % PARTITIONS)
            expected += 3 * i + 1
        producer.flush(60)

        totals = {name: replica.wait_applied(VALID, timeout=240) for name, replica in replicas.items()}
        assert totals == {name: {"total": expected, "applied": VALID} for name in replicas}
        for replica in replicas.values():
            metrics = replica.get("/metrics")[1].decode()
            # both replicas counted every invalid record (5 reasons, once per partition each)
            assert 'sumflow_accumulator_dlq_events_total{reason="invalid_json"} 3.0' in metrics
            assert 'sumflow_accumulator_dlq_events_total{reason="empty"} 3.0' in metrics
        for replica in replicas.values():
            assert replica.stop() == 0, replica.log_tail()  # commits its group offsets on the way out
    finally:
        producer.close(5)
        for replica in replicas.values():
            try:
                replica.stop()
            except ServiceError:
                replica.kill()

    # the DLQ holds exactly one copy of each invalid record: the writer's
    copies = read_records(bootstrap, dlq)
    positions = sorted(
        (int(dict(r.headers)["dlq.source.partition"]), int(dict(r.headers)["dlq.source.offset"])) for r in copies
    )
    per_partition = len(_invalid_records(""))
    assert positions == [(p, o) for p in range(PARTITIONS) for o in range(per_partition)]

    def order(item: tuple[int, bytes | None]) -> tuple[int, bytes]:
        return item[0], item[1] or b""

    copied = [(int(dict(r.headers)["dlq.source.partition"]), r.value) for r in copies]
    assert sorted(copied, key=order) == sorted(invalid, key=order)
    sent = _log_messages(replicas["writer"], "invalid event sent to the DLQ")
    skipped = _log_messages(replicas["reader"], "invalid event skipped (not the DLQ writer)")
    assert len(sent) == len(skipped) == len(invalid)
    assert not _log_messages(replicas["reader"], "invalid event sent to the DLQ")

    # each replica's committed position shows under its own group: the topic's end on every partition
    ends = _end_offsets(bootstrap, topic)
    assert sum(ends.values()) == VALID + len(invalid)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        listed = admin.list_group_offsets(list(groups.values()))
        for group in groups.values():
            committed = listed[group]
            assert {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic} == ends, group
    finally:
        admin.close()
    # and Kafka's own tool, as docs/operations.md has an operator run it: one row per partition, lag 0
    assert set(groups.values()) <= set(_group_command(bootstrap, "--list").split())
    for group in groups.values():
        assert _describe_group(bootstrap, group, topic) == {p: (end, end, 0) for p, end in ends.items()}
    # a removed replica's group is deleted the same way (the replicas hold no membership)
    _group_command(bootstrap, "--delete", "--group", groups["reader"])
    remaining = _group_command(bootstrap, "--list").split()
    assert groups["writer"] in remaining and groups["reader"] not in remaining


def _group_command(bootstrap: str, *args: str) -> str:
    """stdout of Kafka's `ConsumerGroupCommand --bootstrap-server BOOTSTRAP ARGS...` (the cached jars)."""
    tool = [java_binary(), "-cp", f"{ensure_jars()}/*", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"]
    done = subprocess.run(
        [*tool, "--bootstrap-server", bootstrap, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _describe_group(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, int, int]]:
    """{partition: (CURRENT-OFFSET, LOG-END-OFFSET, LAG)} from `ConsumerGroupCommand --describe`."""
    rows = {}
    for line in _group_command(bootstrap, "--describe", "--group", group).splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] == group and fields[1] == topic:
            rows[int(fields[2])] = (int(fields[3]), int(fields[4]), int(fields[5]))
    return rows


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()
