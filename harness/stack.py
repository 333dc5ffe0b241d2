"""Both services on one broker: fresh topics, the accumulator, then the adder; stopped on exit.

with sumflow_stack(broker.bootstrap, tmp_path) as stack:
    stack.adder.add(...); stack.accumulator.wait_applied(n)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.kafka import create_topics, unique_topic
from harness.processes import AccumulatorProcess, AdderProcess, ServiceError


@dataclass
class SumflowStack:
    adder: AdderProcess
    accumulator: AccumulatorProcess
    topic: str
    dlq_topic: str

    def stop(self) -> None:
        for service in (self.adder, self.accumulator):
            with contextlib.suppress(ServiceError):
                service.stop()
            service.kill()


@contextlib.contextmanager
def sumflow_stack(
    bootstrap: str,
    workdir: Path,
    topic: str | None = None,
    partitions: int = 1,
    replication: int = 1,
    adder_env: Mapping[str, str] | None = None,
    accumulator_env: Mapping[str, str] | None = None,
) -> Iterator[SumflowStack]:
    """Create fresh topics (unless `topic` is given), start both services, stop them on exit."""
    topic = topic or unique_topic("sum")
    dlq = f"{topic}.dlq"
    create_topics(bootstrap, [topic], partitions, replication)
    create_topics(bootstrap, [dlq], 1, replication)
    workdir = Path(workdir)
    adder = AdderProcess.for_broker(bootstrap, topic, workdir / "adder", **dict(adder_env or {}))
    accumulator = AccumulatorProcess.for_broker(
        bootstrap, topic, workdir / "accumulator", dlq_topic=dlq, **dict(accumulator_env or {})
    )
    stack = SumflowStack(adder, accumulator, topic, dlq)
    try:
        accumulator.start()
        adder.start()
        yield stack
    finally:
        stack.stop()
