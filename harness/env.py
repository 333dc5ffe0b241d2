"""The one place that turns "a broker, a topic, a state directory" into a service's environment.

    env = adder_env(bootstrap, topic, workdir / "dedupe", grpc_port=free_port(), metrics_port=free_port())
    env = accumulator_env(bootstrap, topic, workdir / "state", http_port=free_port(), SUMFLOW_HTTP_THREADS="4")

Each builder returns only the SUMFLOW_* settings; `process_env` lays them over a base environment.
Extra keyword settings (SUMFLOW_* names) override the defaults. `TEST_DEFAULTS` holds the settings tests
and benchmarks share (a bounded worker pool, INFO logs); `make run` uses the app's own defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Settings a caller's environment must not leak into a started service (a developer's SUMFLOW_* shell,
# a systemd notify socket, an OTLP exporter, a Prometheus multiprocess directory).
PRIVATE_PREFIXES = ("SUMFLOW_", "NOTIFY_SOCKET", "OTEL_", "PROMETHEUS_")

ADDER_TEST_DEFAULTS = {"SUMFLOW_GRPC_WORKERS": "16", "SUMFLOW_LOG_LEVEL": "INFO"}
ACCUMULATOR_TEST_DEFAULTS = {"SUMFLOW_HTTP_THREADS": "4", "SUMFLOW_LOG_LEVEL": "INFO"}


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) without any SUMFLOW_*, systemd or OTLP setting."""
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if not k.startswith(PRIVATE_PREFIXES)}


def process_env(settings: Mapping[str, str], *, inherit: bool = False) -> dict[str, str]:
    """The full environment of a service: `settings` over this process's environment, cleaned of
    private settings unless `inherit` (what `make run` does, so a user's SUMFLOW_* reach the services)."""
    base = dict(os.environ) if inherit else clean_env()
    return {**base, **settings}


def listen(host: str, port: int) -> str:
    return f"{host}:{port}"


def adder_env(
    bootstrap: str,
    topic: str,
    dedupe_dir: Path,
    *,
    grpc_port: int,
    metrics_port: int,
    host: str = "127.0.0.1",
    defaults: Mapping[str, str] = ADDER_TEST_DEFAULTS,
    **extra: str,
) -> dict[str, str]:
    return {
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_GRPC_LISTEN": listen(host, grpc_port),
        "SUMFLOW_METRICS_LISTEN": listen(host, metrics_port),
        "SUMFLOW_DEDUPE_DIR": str(dedupe_dir),
        **defaults,
        **extra,
    }


def accumulator_env(
    bootstrap: str,
    topic: str,
    state_dir: Path,
    *,
    http_port: int,
    dlq_topic: str | None = None,
    consumer_group: str | None = None,
    host: str = "127.0.0.1",
    defaults: Mapping[str, str] = ACCUMULATOR_TEST_DEFAULTS,
    **extra: str,
) -> dict[str, str]:
    """`consumer_group=None` gives the group `g-<topic>`; pass "" to keep the app's default group."""
    env = {
        "SUMFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "SUMFLOW_TOPIC": topic,
        "SUMFLOW_DLQ_TOPIC": dlq_topic or f"{topic}.dlq",
        "SUMFLOW_HTTP_LISTEN": listen(host, http_port),
        "SUMFLOW_STATE_DIR": str(state_dir),
    }
    group = f"g-{topic}" if consumer_group is None else consumer_group
    if group:
        env["SUMFLOW_CONSUMER_GROUP"] = group
    return {**env, **defaults, **extra}
