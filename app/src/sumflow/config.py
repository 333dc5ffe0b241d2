"""Configuration from environment variables (a systemd EnvironmentFile works as is).

Every setting has a default; `load_*_config` validates all of them and raises ConfigError with one
clear line naming the variable, which the entrypoints print before exiting with status 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class CommonConfig:
    kafka_bootstrap: tuple[str, ...]
    topic: str
    log_level: str
    otlp_endpoint: str | None  # OTLP/gRPC endpoint for traces; None disables tracing
    service_instance: str


@dataclass(frozen=True, slots=True)
class AdderConfig:
    common: CommonConfig
    grpc_listen: str
    metrics_listen: str
    dedupe_dir: Path
    dedupe_ttl_seconds: int
    dedupe_size_limit_bytes: int
    grpc_workers: int  # threads serving gRPC calls
    processes: int  # processes sharing the gRPC port with SO_REUSEPORT
    publish_timeout_seconds: float  # retry budget for one event (Kafka delivery timeout)
    producer_retries: int
    producer_linger_ms: int
    producer_max_in_flight: int
    pending_timeout_seconds: float  # a pending de-dupe record older than this may be taken over
    server_kind: str = "aio"  # SUMFLOW_ADDER_SERVER: "aio" (grpc.aio event loop) or "sync" (thread pool)
    access_log: str = "failures"  # SUMFLOW_ACCESS_LOG: "all" calls, or "failures" (not OK) and traced calls


@dataclass(frozen=True, slots=True)
class AccumulatorConfig:
    common: CommonConfig
    http_listen: str
    state_dir: Path
    consumer_group: str
    dlq_topic: str
    applied_window_seconds: int
    applied_window_max_ids: int
    audit_max_bytes: int
    audit_keep_files: int
    max_poll_records: int
    http_threads: int
    stall_seconds: float


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: str, default: str) -> str:
        value = self._env.get(name, "").strip()
        return value or default

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def int(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value}: must be between {minimum} and {maximum}")
        return value

    def float(self, name: str, default: float, minimum: float, maximum: float) -> float:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value}: must be between {minimum} and {maximum}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if value not in allowed:
            raise ConfigError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        return value

    def listen(self, name: str, default: str) -> str:
        value = self.str(name, default)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{name}={value!r}: expected HOST:PORT (e.g. 0.0.0.0:8080, [::]:8080)")
        return value

    def path(self, name: str, default: str) -> Path:
        return Path(self.str(name, default)).expanduser()


def split_listen(value: str) -> tuple[str, int]:
    """'0.0.0.0:8080' -> ('0.0.0.0', 8080); '[::]:8080' -> ('::', 8080)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _common(env: _Env) -> CommonConfig:
    bootstrap = tuple(b.strip() for b in env.str("SUMFLOW_KAFKA_BOOTSTRAP", "localhost:9092").split(",") if b.strip())
    for broker in bootstrap:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"SUMFLOW_KAFKA_BOOTSTRAP: {broker!r} is not HOST:PORT")
    topic = env.str("SUMFLOW_TOPIC", "summation")
    _check_topic("SUMFLOW_TOPIC", topic)
    level = env.str("SUMFLOW_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"SUMFLOW_LOG_LEVEL={level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return CommonConfig(
        kafka_bootstrap=bootstrap,
        topic=topic,
        log_level=level,
        otlp_endpoint=env.optional("SUMFLOW_OTLP_ENDPOINT"),
        service_instance=env.str("SUMFLOW_INSTANCE", os.uname().nodename),
    )


def _check_topic(name: str, topic: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if len(topic) > 249 or not set(topic) <= allowed or topic in (".", ".."):
        raise ConfigError(f"{name}={topic!r}: not a valid Kafka topic name")


def _state_default(sub: str) -> str:
    return str(Path(os.environ.get("STATE_DIRECTORY", "/var/lib/sumflow")) / sub)


def load_adder_config(environ: Mapping[str, str] | None = None) -> AdderConfig:
    env = _Env(os.environ if environ is None else environ)
    return AdderConfig(
        common=_common(env),
        grpc_listen=env.listen("SUMFLOW_GRPC_LISTEN", "0.0.0.0:50051"),
        metrics_listen=env.listen("SUMFLOW_METRICS_LISTEN", "0.0.0.0:9464"),
        dedupe_dir=env.path("SUMFLOW_DEDUPE_DIR", _state_default("dedupe")),
        dedupe_ttl_seconds=env.int("SUMFLOW_DEDUPE_TTL_SECONDS", 86400, 1, 365 * 86400),
        dedupe_size_limit_bytes=env.int("SUMFLOW_DEDUPE_SIZE_LIMIT_BYTES", 1 << 30, 1 << 20, 1 << 40),
        grpc_workers=env.int("SUMFLOW_GRPC_WORKERS", 64, 1, 1024),
        processes=env.int("SUMFLOW_ADDER_PROCESSES", 1, 1, 64),
        publish_timeout_seconds=env.float("SUMFLOW_PUBLISH_TIMEOUT_SECONDS", 10.0, 0.5, 300.0),
        producer_retries=env.int("SUMFLOW_PRODUCER_RETRIES", 5, 0, 100),
        producer_linger_ms=env.int("SUMFLOW_PRODUCER_LINGER_MS", 1, 0, 1000),
        producer_max_in_flight=env.int("SUMFLOW_PRODUCER_MAX_IN_FLIGHT", 5, 1, 5),
        pending_timeout_seconds=env.float("SUMFLOW_PENDING_TIMEOUT_SECONDS", 30.0, 1.0, 3600.0),
        server_kind=env.choice("SUMFLOW_ADDER_SERVER", "aio", ("aio", "sync")),
        access_log=env.choice("SUMFLOW_ACCESS_LOG", "failures", ("all", "failures")),
    )


def load_accumulator_config(environ: Mapping[str, str] | None = None) -> AccumulatorConfig:
    env = _Env(os.environ if environ is None else environ)
    common = _common(env)
    dlq = env.str("SUMFLOW_DLQ_TOPIC", "summation.dlq")
    _check_topic("SUMFLOW_DLQ_TOPIC", dlq)
    if dlq == common.topic:
        raise ConfigError("SUMFLOW_DLQ_TOPIC must differ from SUMFLOW_TOPIC")
    return AccumulatorConfig(
        common=common,
        http_listen=env.listen("SUMFLOW_HTTP_LISTEN", "0.0.0.0:8080"),
        state_dir=env.path("SUMFLOW_STATE_DIR", _state_default("accumulator")),
        consumer_group=env.str("SUMFLOW_CONSUMER_GROUP", "sumflow-accumulator"),
        dlq_topic=dlq,
        applied_window_seconds=env.int("SUMFLOW_APPLIED_WINDOW_SECONDS", 900, 1, 7 * 86400),
        applied_window_max_ids=env.int("SUMFLOW_APPLIED_WINDOW_MAX_IDS", 2_000_000, 1000, 100_000_000),
        audit_max_bytes=env.int("SUMFLOW_AUDIT_MAX_BYTES", 64 << 20, 4096, 1 << 40),
        audit_keep_files=env.int("SUMFLOW_AUDIT_KEEP_FILES", 10, 1, 10_000),
        max_poll_records=env.int("SUMFLOW_MAX_POLL_RECORDS", 5000, 1, 100_000),
        http_threads=env.int("SUMFLOW_HTTP_THREADS", 8, 1, 256),
        stall_seconds=env.float("SUMFLOW_STALL_SECONDS", 60.0, 1.0, 86400.0),
    )
