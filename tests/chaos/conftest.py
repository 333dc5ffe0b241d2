"""Chaos suite fixtures: the size of each fault run, and the services as real processes.

Every scenario takes a `size` parameter: "short" (the default, part of `make test`) or "long"
(`SUMFLOW_CHAOS=long`, what `make chaos` runs). Only one size is generated per session, so a plain
`pytest tests` never starts a long run and nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.broker import unique_topic
from tests.support.chaos import RESULTS, format_table
from tests.support.chaos_processes import (
    AccumulatorProcess,
    AdderProcess,
    accumulator_env,
    adder_env,
)

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
    extra: list = field(default_factory=list)


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """deploy(bootstrap, create_topic, partitions=3, state_dir=None, adder_extra={}, acc_extra={})."""
    made: list[Deployment] = []

    def make(
        bootstrap: str,
        create_topic: Callable[[str, int], str],
        *,
        partitions: int = 3,
        state_dir: Path | None = None,
        adder_extra: dict[str, str] | None = None,
        acc_extra: dict[str, str] | None = None,
    ) -> Deployment:
        n = len(made)
        topic = create_topic(unique_topic("chaos"), partitions)
        dlq = create_topic(unique_topic("chaos-dlq"), 1)
        state = state_dir or tmp_path / f"state-{n}"
        adder = AdderProcess(
            adder_env(bootstrap, topic, tmp_path / f"dedupe-{n}", **(adder_extra or {})), tmp_path / f"adder-{n}.log"
        )
        acc = AccumulatorProcess(
            accumulator_env(bootstrap, topic, dlq, state, **(acc_extra or {})), tmp_path / f"accumulator-{n}.log"
        )
        deployment = Deployment(bootstrap, topic, dlq, state, adder, acc)
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.adder.kill()
        deployment.accumulator.kill()
