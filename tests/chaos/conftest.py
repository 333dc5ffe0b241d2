"""Chaos suite fixtures: the size of each fault run, and the services as real processes.

Every scenario takes a `size` parameter: "short" (the default, part of `make test`) or "long"
(`SUMFLOW_CHAOS=long`, what `make chaos` runs). Only one size is generated per session, so a plain
`pytest tests` never starts a long run and nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.driver import plan_requests
from harness.faults import RESULTS, FaultRun, format_table
from harness.kafka import KafkaBroker, KafkaCluster, unique_topic
from harness.processes import AccumulatorProcess, AdderProcess

SIZE_ENV = "SUMFLOW_CHAOS"


def chaos_size() -> str:
    return "long" if os.environ.get(SIZE_ENV, "").strip().lower() == "long" else "short"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "size" in metafunc.fixturenames:
        size = chaos_size()
        marks = [pytest.mark.slow] if size == "long" else []
        metafunc.parametrize("size", [pytest.param(size, marks=marks)])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section(f"sumflow reliability summary ({chaos_size()} runs)")
        terminalreporter.write_line(format_table(RESULTS))


@dataclass
class Deployment:
    """One adder and one accumulator on their own topic, with their own state."""

    bootstrap: str
    topic: str
    dlq_topic: str
    state_dir: Path
    adder: AdderProcess
    accumulator: AccumulatorProcess

    def start_run(self, count: int, seed: int, *, window: int = 32) -> FaultRun:
        """Start both services, wait until the accumulator is ready, plan `count` requests."""
        self.adder.start(timeout=90)
        self.accumulator.start(timeout=90)
        requests = plan_requests(count, seed=seed, big_share=0.05, upper_share=0.2)
        return FaultRun(self.adder.target, self.accumulator, self.state_dir, requests, window=window)


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """deploy(broker, partitions=3, topic_configs=None, state_dir=None, adder_extra={}, acc_extra={}):
    topics on `broker` (a KafkaBroker or KafkaCluster) and the two services, not yet started."""
    made: list[Deployment] = []

    def make(
        broker: KafkaCluster,
        *,
        partitions: int = 3,
        topic_configs: dict[str, str] | None = None,
        state_dir: Path | None = None,
        adder_extra: dict[str, str] | None = None,
        acc_extra: dict[str, str] | None = None,
    ) -> Deployment:
        n = len(made)
        topic = broker.create_topic(unique_topic("chaos"), partitions=partitions, configs=topic_configs)
        dlq = broker.create_topic(unique_topic("chaos-dlq"), partitions=1, configs=topic_configs)
        state = state_dir or tmp_path / f"state-{n}"
        adder_settings = {"SUMFLOW_LOG_LEVEL": "WARNING", **(adder_extra or {})}
        adder = AdderProcess.for_broker(broker.bootstrap, topic, tmp_path / f"adder-{n}", **adder_settings)
        acc = AccumulatorProcess.for_broker(
            broker.bootstrap, topic, tmp_path / f"accumulator-{n}", dlq_topic=dlq, state_dir=state, **(acc_extra or {})
        )
        deployment = Deployment(broker.bootstrap, topic, dlq, state, adder, acc)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.adder.kill()
        deployment.accumulator.kill()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A single-node broker of the test's own, free to be stopped and killed (killed at the end)."""
    broker = KafkaBroker(tmp_path / "kafka")
    try:
        broker.start()
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A three-node KRaft cluster of the test's own (killed at the end)."""
    cluster = KafkaCluster(tmp_path / "k3")
    try:
        cluster.start(timeout=240)
        yield cluster
    finally:
        cluster.kill()
