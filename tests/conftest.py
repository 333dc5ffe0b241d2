"""Fixtures shared by every test tier.

- `kafka_broker` (session): one real single-node KRaft broker per pytest session (started lazily by
  the first test that asks for it). Tests must not stop/kill it; use their own `KafkaBroker` for that.
- `topic`: a fresh, uniquely named topic on that broker (1 partition).
- `topic_factory`: `topic_factory(partitions=3, prefix="x")` for more/other topics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.kafka import KafkaBroker, unique_topic


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(Path(tmp_path_factory.mktemp("kafka-session")))
    try:
        broker.start()
    except Exception:
        broker.kill()
        raise
    yield broker
    broker.stop()


@pytest.fixture
def topic_factory(kafka_broker: KafkaBroker) -> Callable[..., str]:
    def make(partitions: int = 1, prefix: str = "t") -> str:
        return kafka_broker.create_topic(unique_topic(prefix), partitions=partitions, replication=1)

    return make


@pytest.fixture
def topic(topic_factory: Callable[..., str]) -> str:
    return topic_factory()
