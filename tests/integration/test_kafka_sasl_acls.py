"""Both services on a broker that wants TLS, a SCRAM-SHA-512 login and an ACL for every action.

The adder and the accumulator run as real processes, each as its own Kafka user with the least
privilege (harness/secure_broker.sumflow_acls), their passwords in 0600 files. The negative
checks are the ones a deployment must pass: no plaintext client, no write without an ACL, no read
for the adder.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, KafkaError, KafkaTimeoutError, TopicAuthorizationFailedError
from kafka.structs import OffsetAndMetadata

from harness.kafka import unique_topic
from harness.pki import TestPki
from harness.processes import ACCUMULATOR_BIN, AccumulatorProcess, AdderProcess, ServiceError
from harness.secure_broker import SecureKafkaBroker, sumflow_acls

pytestmark = pytest.mark.timeout(600)

USERS = ("adder", "accumulator", "nobody")
CALLS = 300


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[SecureKafkaBroker]:
    with SecureKafkaBroker(tmp_path_factory.mktemp("kafka"), pki, users=USERS) as running:
        yield running


@pytest.fixture(scope="module")
def topics(broker: SecureKafkaBroker) -> tuple[str, str, str]:
    topic = broker.create_topic(unique_topic("sum"))
    dlq = broker.create_topic(f"{topic}.dlq")
    # one group per accumulator replica under a prefix, as the roles deploy them
    broker.grant(sumflow_acls("adder", "accumulator", topic, dlq, f"g-{topic}-"))
    return topic, dlq, f"g-{topic}-app-1"


def test_services_count_a_stream_exactly_as_least_privileged_users(
    broker: SecureKafkaBroker, topics: tuple[str, str, str], tmp_path: Path
) -> None:
    topic, dlq, group = topics
    accumulator = AccumulatorProcess.for_broker(
        broker.bootstrap,
        topic,
        tmp_path / "accumulator",
        dlq_topic=dlq,
        SUMFLOW_CONSUMER_GROUP=group,
        **broker.service_env("accumulator"),
    )
    adder = AdderProcess.for_broker(broker.bootstrap, topic, tmp_path / "adder", **broker.service_env("adder"))
    mark = broker.log_size()
    try:
        accumulator.start(timeout=120)
        adder.start(timeout=120)
        expected = 0
        for i in range(CALLS):
            reply = adder.add(str(uuid.uuid4()), i, 2 * i)
            assert reply.result == 3 * i
            expected += 3 * i
        assert accumulator.wait_applied(CALLS, timeout=120) == {"total": expected, "applied": CALLS}
    finally:
        adder.close_client()
        for service in (adder, accumulator):
            try:
                service.stop()
            except ServiceError:
                service.kill()
    # the recovery command reads the topic with the same settings and user: without the audit log,
    # the total can only come from the 300 events on the topic
    shutil.rmtree(accumulator.state_dir / "audit")
    rebuilt = subprocess.run(
        [str(ACCUMULATOR_BIN), "rebuild"], env=accumulator.env, capture_output=True, text=True, timeout=300
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"total={expected} applied={CALLS}" in rebuilt.stdout
    # the group ACL let the accumulator commit its position (done on the way out at the latest)
    assert _committed(broker, group, topic) == CALLS
    # nothing the services did needed more than their ACLs
    assert " is Denied operation" not in broker.log_since(mark)
    for service, user in ((adder, "adder"), (accumulator, "accumulator")):
        output = "\n".join(service.output_lines())
        assert broker.passwords[user] not in output
        assert "Authorization failed" not in output and "SaslAuthenticationFailed" not in output


def test_the_accumulator_user_commits_to_groups_under_its_prefix_only(
    broker: SecureKafkaBroker, topics: tuple[str, str, str]
) -> None:
    """A second replica's group is allowed without a new ACL; a group outside the prefix is not."""
    topic = topics[0]
    partition = TopicPartition(topic, 0)
    for group, allowed in ((f"g-{topic}-app-2", True), (f"g-{topic}", False), (f"other-{topic}-", False)):
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            **broker.client_config("accumulator"),
        )
        try:
            consumer.assign([partition])
            if allowed:
                consumer.commit({partition: OffsetAndMetadata(0, "", -1)})
            else:
                with pytest.raises(GroupAuthorizationFailedError):
                    consumer.commit({partition: OffsetAndMetadata(0, "", -1)})
        finally:
            consumer.close(autocommit=False)
    assert _committed(broker, f"g-{topic}-app-2", topic) == 0


def test_a_plaintext_client_is_refused(broker: SecureKafkaBroker, topics: tuple[str, str, str]) -> None:
    mark = broker.log_size()
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=broker.bootstrap, bootstrap_timeout_ms=5000, request_timeout_ms=3000)
    assert "Failed authentication with /127.0.0.1" in broker.log_since(mark)
    assert "(SSL handshake failed)" in broker.log_since(mark)


def test_a_wrong_password_is_refused(broker: SecureKafkaBroker) -> None:
    config = {**broker.client_config("adder"), "sasl_plain_password": "not-the-password"}
    mark = broker.log_size()
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=broker.bootstrap, bootstrap_timeout_ms=5000, **config)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in broker.log_since(mark)


def test_an_authenticated_user_without_acls_cannot_write_the_topic(
    broker: SecureKafkaBroker, topics: tuple[str, str, str]
) -> None:
    topic = topics[0]
    before = _end_offset(broker, topic)
    mark = broker.log_size()
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, max_block_ms=10000, acks="all", **broker.client_config("nobody")
    )
    try:
        with pytest.raises((TopicAuthorizationFailedError, KafkaTimeoutError)) as refused:
            producer.send(topic, b"forged event").get(timeout=20)
    finally:
        producer.close(timeout=5)
    # kafka-python sees either the refusal or a topic it may not even describe; the broker appended
    # nothing and says why
    assert _end_offset(broker, topic) == before, refused.value
    denied = "Principal = User:nobody is Denied operation = DESCRIBE from host = 127.0.0.1"
    assert f"{denied} on resource = Topic:LITERAL:{topic}" in broker.log_since(mark)


def test_the_adder_user_cannot_read_the_topic(broker: SecureKafkaBroker, topics: tuple[str, str, str]) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, **broker.client_config("adder")
    )
    try:
        consumer.assign([TopicPartition(topics[0], 0)])
        consumer.seek(TopicPartition(topics[0], 0), 0)
        with pytest.raises(TopicAuthorizationFailedError):
            for _ in range(50):  # bounded: the refusal comes with the first fetch
                consumer.poll(timeout_ms=200)
    finally:
        consumer.close()


def test_the_accumulator_user_cannot_write_the_topic(broker: SecureKafkaBroker, topics: tuple[str, str, str]) -> None:
    """Only the adder writes events: a compromised accumulator cannot forge summations."""
    topic = topics[0]
    before = _end_offset(broker, topic)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, max_block_ms=10000, acks="all", **broker.client_config("accumulator")
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, b"forged event").get(timeout=20)
    finally:
        producer.close(timeout=5)
    assert _end_offset(broker, topic) == before


def _end_offset(broker: SecureKafkaBroker, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, **broker.client_config("admin"))
    try:
        partition = TopicPartition(topic, 0)
        return consumer.end_offsets([partition])[partition]
    finally:
        consumer.close()


def _committed(broker: SecureKafkaBroker, group: str, topic: str) -> int | None:
    """The group's committed offset on partition 0, read by the admin (no member joins the group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False, **broker.client_config("admin")
    )
    try:
        return consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close(autocommit=False)
