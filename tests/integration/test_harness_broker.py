"""The harness itself: a real broker accepts produce requests and comes back after SIGKILL."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer

from harness.kafka import KafkaBroker


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    try:
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) >= expected:
                break
        return values
    finally:
        consumer.close()


def test_session_broker_round_trip(kafka_broker: KafkaBroker, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    for i in range(20):
        producer.send(topic, str(i).encode()).get(timeout=30)
    producer.close()
    assert _consume_all(kafka_broker.bootstrap, topic, 20) == [str(i).encode() for i in range(20)]


def test_killed_broker_restarts_with_its_data(tmp_path) -> None:
    broker = KafkaBroker(tmp_path / "k")
    broker.start()
    try:
        topic = broker.create_topic("survivor", partitions=2)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for i in range(10):
            producer.send(topic, str(i).encode()).get(timeout=30)
        producer.close()
        old_pid = broker.pid
        broker.kill()
        assert not broker.is_alive()
        broker.start()
        assert broker.pid != old_pid
        assert sorted(_consume_all(broker.bootstrap, topic, 10)) == sorted(str(i).encode() for i in range(10))
    finally:
        broker.stop()
    assert not broker.is_alive()
