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
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
FLAG_VALUES = {"true": True, "false": False}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How the Kafka clients connect; the password stays in its file until a client is built."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT or SASL_SSL
    ca_file: Path | None = None  # PEM CA bundle verifying the brokers; None: the system roots
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class CommonConfig:
    kafka_bootstrap: tuple[str, ...]
    topic: str
    log_level: str
    otlp_endpoint: str | None  # OTLP/gRPC endpoint for traces; None disables tracing
    service_instance: str
    kafka_security: KafkaSecurity = KafkaSecurity()
    # SUMFLOW_DRAIN_SECONDS: after SIGTERM, seconds of serving with health NOT_SERVING / readiness 503
    drain_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class GrpcTls:
    """The adder's gRPC server credentials; client_ca set: client certificates are required (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class AdderConfig:
    common: CommonConfig
    grpc_listen: str
    metrics_listen: str
    dedupe_dir: Path
    dedupe_ttl_seconds: int
    dedupe_size_limit_bytes: int
    grpc_workers: int  # bounds the calls served at once: 64 per worker
    processes: int  # processes sharing the gRPC port with SO_REUSEPORT
    publish_timeout_seconds: float  # retry budget for one event (Kafka delivery timeout)
    producer_retries: int
    producer_linger_ms: int
    publish_batch_max: int  # summations per Kafka record (v2 above 1)
    producer_max_in_flight: int
    pending_timeout_seconds: float  # a pending de-dupe record older than this may be taken over
    access_log: str = "failures"  # SUMFLOW_ACCESS_LOG: "all" calls, or "failures" (not OK) and traced calls
    grpc_tls: GrpcTls | None = None  # None: an insecure port (plaintext gRPC)


@dataclass(frozen=True, slots=True)
class AccumulatorConfig:
    common: CommonConfig
    http_listen: str
    state_dir: Path
    consumer_group: str
    dlq_topic: str
    dlq_writer: bool  # False: invalid records are skipped and counted, another replica dead-letters them
    applied_window_seconds: int
    applied_window_max_ids: int
    audit_max_bytes: int
    audit_keep_files: int
    max_poll_records: int
    http_threads: int
    stall_seconds: float


class _Env:
    """Reads one setting at a time; `doc` says what it does (the configuration reference shows it)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: str, default: str, doc: str, shown: str | None = None, accepts: str = "text") -> str:
        value = self._env.get(name, "").strip()
        return value or default

    def optional(self, name: str, doc: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def int(self, name: str, default: int, minimum: int, maximum: int, doc: str) -> int:
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

    def float(self, name: str, default: float, minimum: float, maximum: float, doc: str) -> float:
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

    def choice(self, name: str, default: str, allowed: tuple[str, ...], doc: str) -> str:
        value = self._env.get(name, "").strip() or default
        if value not in allowed:
            raise ConfigError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        return value

    def flag(self, name: str, default: bool, doc: str) -> bool:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            return FLAG_VALUES[raw.lower()]
        except KeyError:
            raise ConfigError(f"{name}={raw!r}: expected true or false") from None

    def listen(self, name: str, default: str, doc: str) -> str:
        value = self._env.get(name, "").strip() or default
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{name}={value!r}: expected HOST:PORT (e.g. 0.0.0.0:8080, [::]:8080)")
        return value

    def path(self, name: str, default: str, doc: str, shown: str | None = None) -> Path:
        return Path(self.str(name, default, doc)).expanduser()

    def file(self, name: str, doc: str) -> Path | None:
        """An optional path to a file that must exist and be readable now (unset: None)."""
        raw = self._env.get(name, "").strip()
        if not raw:
            return None
        path = Path(raw).expanduser()
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"{name}={raw!r}: not a readable file")
        return path


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable as the loaders read it: the configuration reference's row."""

    name: str
    default: str  # as a reader should see it ("unset", "the host name", ...)
    accepts: str  # what a valid value looks like
    doc: str


class _Recorder(_Env):
    """An empty environment that notes every setting a loader reads, in order (defaults returned)."""

    def __init__(self) -> None:
        super().__init__({})
        self.settings: list[Setting] = []

    def _note(self, name: str, default: object, accepts: str, doc: str) -> None:
        self.settings.append(Setting(name, str(default), accepts, doc))

    def str(self, name: str, default: str, doc: str, shown: str | None = None, accepts: str = "text") -> str:
        self._note(name, f"`{default}`" if shown is None else shown, accepts, doc)
        return default

    def optional(self, name: str, doc: str) -> str | None:
        self._note(name, "unset", "text", doc)
        return None

    def int(self, name: str, default: int, minimum: int, maximum: int, doc: str) -> int:
        self._note(name, f"`{default}`", f"integer {minimum}..{maximum}", doc)
        return default

    def float(self, name: str, default: float, minimum: float, maximum: float, doc: str) -> float:
        self._note(name, f"`{default:g}`", f"number {minimum:g}..{maximum:g}", doc)
        return default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], doc: str) -> str:
        self._note(name, f"`{default}`", " or ".join(f"`{a}`" for a in allowed), doc)
        return default

    def flag(self, name: str, default: bool, doc: str) -> bool:
        self._note(name, f"`{str(default).lower()}`", " or ".join(f"`{v}`" for v in FLAG_VALUES), doc)
        return default

    def listen(self, name: str, default: str, doc: str) -> str:
        self._note(name, f"`{default}`", "HOST:PORT (port 0: any free port)", doc)
        return default

    def path(self, name: str, default: str, doc: str, shown: str | None = None) -> Path:
        self._note(name, f"`{default}`" if shown is None else shown, "directory path", doc)
        return Path(default)

    def file(self, name: str, doc: str) -> Path | None:
        self._note(name, "unset", "readable file path", doc)
        return None


def split_listen(value: str) -> tuple[str, int]:
    """'0.0.0.0:8080' -> ('0.0.0.0', 8080); '[::]:8080' -> ('::', 8080)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _common(env: _Env) -> CommonConfig:
    bootstrap_raw = env.str(
        "SUMFLOW_KAFKA_BOOTSTRAP", "localhost:9092", "Kafka brokers to connect to", accepts="HOST:PORT[,HOST:PORT...]"
    )
    bootstrap = tuple(b.strip() for b in bootstrap_raw.split(",") if b.strip())
    for broker in bootstrap:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"SUMFLOW_KAFKA_BOOTSTRAP: {broker!r} is not HOST:PORT")
    topic = env.str("SUMFLOW_TOPIC", "summation", "the event topic", accepts="Kafka topic name")
    _check_topic("SUMFLOW_TOPIC", topic)
    level = env.str(
        "SUMFLOW_LOG_LEVEL",
        "INFO",
        "least severe level logged (JSON lines on stdout)",
        accepts=" ".join(f"`{lvl}`" for lvl in LOG_LEVELS),
    ).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"SUMFLOW_LOG_LEVEL={level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return CommonConfig(
        kafka_bootstrap=bootstrap,
        topic=topic,
        log_level=level,
        otlp_endpoint=env.optional("SUMFLOW_OTLP_ENDPOINT", "OTLP/gRPC endpoint for traces; unset: no tracing"),
        service_instance=env.str(
            "SUMFLOW_INSTANCE",
            os.uname().nodename,
            "`service.instance.id` of traces and the Kafka client id",
            shown="the host name",
        ),
        kafka_security=_kafka_security(env),
        drain_seconds=env.float(
            "SUMFLOW_DRAIN_SECONDS",
            2.0,
            0.0,
            300.0,
            "after SIGTERM: seconds to keep serving with gRPC health `NOT_SERVING` (adder) or `/readyz` 503 "
            "(accumulator), so that a load balancer's health check moves traffic away before the port closes",
        ),
    )


def _kafka_security(env: _Env) -> KafkaSecurity:
    protocol = env.choice(
        "SUMFLOW_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        KAFKA_SECURITY_PROTOCOLS,
        "how the Kafka clients connect: `SASL_SSL` is TLS (the brokers' certificates and names checked) "
        "and a SASL login; `PLAINTEXT` neither",
    )
    ca_file = env.file(
        "SUMFLOW_KAFKA_SSL_CAFILE",
        "PEM CA bundle the brokers' certificates are checked against (with `SASL_SSL`); unset: system roots",
    )
    mechanism = env.choice(
        "SUMFLOW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", KAFKA_SASL_MECHANISMS, "SASL mechanism (with `SASL_SSL`)"
    )
    username = env.optional("SUMFLOW_KAFKA_SASL_USERNAME", "SASL user name (with `SASL_SSL`)")
    password_file = env.file(
        "SUMFLOW_KAFKA_SASL_PASSWORD_FILE",
        "file holding the SASL password (first line; with `SASL_SSL`); the password is never read from the "
        "environment or logged",
    )
    if password_file is not None and not _first_line(password_file):
        raise ConfigError(f"SUMFLOW_KAFKA_SASL_PASSWORD_FILE: {password_file} is empty")
    if protocol == "SASL_SSL" and (username is None or password_file is None):
        raise ConfigError(
            "SUMFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs SUMFLOW_KAFKA_SASL_USERNAME and "
            "SUMFLOW_KAFKA_SASL_PASSWORD_FILE"
        )
    if protocol == "PLAINTEXT" and (ca_file or username or password_file):
        raise ConfigError(
            "SUMFLOW_KAFKA_SSL_CAFILE and SUMFLOW_KAFKA_SASL_* need SUMFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        )
    return KafkaSecurity(protocol, ca_file, mechanism, username, password_file)


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        return handle.readline().rstrip("\r\n")


def _grpc_tls(env: _Env) -> GrpcTls | None:
    cert = env.file("SUMFLOW_GRPC_TLS_CERT", "PEM certificate (chain) of the gRPC server; set: gRPC over TLS only")
    key = env.file("SUMFLOW_GRPC_TLS_KEY", "PEM private key of `SUMFLOW_GRPC_TLS_CERT`")
    client_ca = env.file(
        "SUMFLOW_GRPC_TLS_CLIENT_CA",
        "PEM CA bundle; set: every gRPC client must present a certificate it signed (mutual TLS)",
    )
    if (cert is None) != (key is None):
        raise ConfigError("SUMFLOW_GRPC_TLS_CERT and SUMFLOW_GRPC_TLS_KEY go together")
    if cert is None or key is None:
        if client_ca is not None:
            raise ConfigError("SUMFLOW_GRPC_TLS_CLIENT_CA needs SUMFLOW_GRPC_TLS_CERT and SUMFLOW_GRPC_TLS_KEY")
        return None
    return GrpcTls(cert, key, client_ca)


def _check_topic(name: str, topic: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if len(topic) > 249 or not set(topic) <= allowed or topic in (".", ".."):
        raise ConfigError(f"{name}={topic!r}: not a valid Kafka topic name")


def _state_default(sub: str) -> str:
    return str(Path(os.environ.get("STATE_DIRECTORY", "/var/lib/sumflow")) / sub)


def _state_shown(sub: str) -> str:
    return f"`$STATE_DIRECTORY/{sub}` (systemd's `StateDirectory=`), else `/var/lib/sumflow/{sub}`"


def load_adder_config(environ: Mapping[str, str] | None = None) -> AdderConfig:
    return _adder(_Env(os.environ if environ is None else environ))


def _adder(env: _Env) -> AdderConfig:
    return AdderConfig(
        common=_common(env),
        grpc_listen=env.listen("SUMFLOW_GRPC_LISTEN", "0.0.0.0:50051", "gRPC address (not port 0 with processes > 1)"),
        metrics_listen=env.listen(
            "SUMFLOW_METRICS_LISTEN",
            "0.0.0.0:9464",
            "Prometheus `/metrics` (OpenMetrics with exemplars if asked) on the bounded HTTP server both services use",
        ),
        dedupe_dir=env.path(
            "SUMFLOW_DEDUPE_DIR", _state_default("dedupe"), "the de-dupe store (diskcache)", _state_shown("dedupe")
        ),
        dedupe_ttl_seconds=env.int(
            "SUMFLOW_DEDUPE_TTL_SECONDS", 86400, 1, 365 * 86400, "how long a request id is remembered"
        ),
        dedupe_size_limit_bytes=env.int(
            "SUMFLOW_DEDUPE_SIZE_LIMIT_BYTES", 1 << 30, 1 << 20, 1 << 40, "size limit of the de-dupe store"
        ),
        grpc_workers=env.int(
            "SUMFLOW_GRPC_WORKERS",
            64,
            1,
            1024,
            "calls served at once per process: 64 times this (the gRPC server's `maximum_concurrent_rpcs`)",
        ),
        processes=env.int(
            "SUMFLOW_ADDER_PROCESSES", 1, 1, 64, "above 1: a supervisor and N workers sharing the port (SO_REUSEPORT)"
        ),
        publish_timeout_seconds=env.float(
            "SUMFLOW_PUBLISH_TIMEOUT_SECONDS",
            10.0,
            0.5,
            300.0,
            "Kafka delivery timeout of one event (retry budget); then the call is `UNAVAILABLE`",
        ),
        producer_retries=env.int("SUMFLOW_PRODUCER_RETRIES", 5, 0, 100, "producer retries inside that budget"),
        producer_linger_ms=env.int("SUMFLOW_PRODUCER_LINGER_MS", 1, 0, 1000, "producer batching delay"),
        publish_batch_max=env.int(
            "SUMFLOW_PUBLISH_BATCH_MAX",
            1,
            1,
            256,
            "most summations in one Kafka record: above 1, the calls ready together share one v2 record"
            " (docs/events.md; only once every accumulator reads v2); 1 = one v1 event per call",
        ),
        producer_max_in_flight=env.int(
            "SUMFLOW_PRODUCER_MAX_IN_FLIGHT",
            5,
            1,
            5,
            "produce requests in flight per broker connection (idempotence keeps order)",
        ),
        pending_timeout_seconds=env.float(
            "SUMFLOW_PENDING_TIMEOUT_SECONDS",
            30.0,
            1.0,
            3600.0,
            "a pending de-dupe record older than this may be taken over by a retry",
        ),
        access_log=env.choice(
            "SUMFLOW_ACCESS_LOG",
            "failures",
            ("all", "failures"),
            "`failures`: a JSON line per call answered with a status other than OK and per traced call; "
            "`all`: every call",
        ),
        grpc_tls=_grpc_tls(env),
    )


def load_accumulator_config(environ: Mapping[str, str] | None = None) -> AccumulatorConfig:
    return _accumulator(_Env(os.environ if environ is None else environ))


def _accumulator(env: _Env) -> AccumulatorConfig:
    common = _common(env)
    dlq = env.str(
        "SUMFLOW_DLQ_TOPIC",
        "summation.dlq",
        "dead-letter topic for invalid events (must differ from `SUMFLOW_TOPIC`)",
        accepts="Kafka topic name",
    )
    _check_topic("SUMFLOW_DLQ_TOPIC", dlq)
    if dlq == common.topic:
        raise ConfigError("SUMFLOW_DLQ_TOPIC must differ from SUMFLOW_TOPIC")
    return AccumulatorConfig(
        common=common,
        http_listen=env.listen("SUMFLOW_HTTP_LISTEN", "0.0.0.0:8080", "REST API, `/healthz`, `/readyz`, `/metrics`"),
        state_dir=env.path(
            "SUMFLOW_STATE_DIR",
            _state_default("accumulator"),
            "state.db, total.json, the audit log and the lock file",
            _state_shown("accumulator"),
        ),
        consumer_group=env.str(
            "SUMFLOW_CONSUMER_GROUP",
            "sumflow-accumulator",
            "consumer group told the position, for lag tools (the state holds the real offsets); one group per "
            "accumulator instance, or the group shows whichever instance committed last",
        ),
        dlq_topic=dlq,
        dlq_writer=env.flag(
            "SUMFLOW_DLQ_WRITER",
            True,
            "`true`: invalid records are written to `SUMFLOW_DLQ_TOPIC`; `false`: skipped, counted and logged "
            "only (replicas reading the same topic: exactly one of them writes the DLQ)",
        ),
        applied_window_seconds=env.int(
            "SUMFLOW_APPLIED_WINDOW_SECONDS",
            900,
            1,
            7 * 86400,
            "how long applied request ids are kept to drop a repeated event",
        ),
        applied_window_max_ids=env.int(
            "SUMFLOW_APPLIED_WINDOW_MAX_IDS", 2_000_000, 1000, 100_000_000, "most request ids kept in that window"
        ),
        audit_max_bytes=env.int(
            "SUMFLOW_AUDIT_MAX_BYTES", 64 << 20, 4096, 1 << 40, "audit log segment size before rotation"
        ),
        audit_keep_files=env.int("SUMFLOW_AUDIT_KEEP_FILES", 10, 1, 10_000, "newest audit segments kept"),
        max_poll_records=env.int("SUMFLOW_MAX_POLL_RECORDS", 5000, 1, 100_000, "most records per poll (one batch)"),
        http_threads=env.int("SUMFLOW_HTTP_THREADS", 8, 1, 256, "waitress threads serving HTTP"),
        stall_seconds=env.float(
            "SUMFLOW_STALL_SECONDS",
            60.0,
            1.0,
            86400.0,
            "seconds without progress while records are pending before /healthz fails (the watchdog restarts)",
        ),
    )


def describe_settings() -> dict[str, list[Setting]]:
    """Every setting each service reads, in reading order: {"both": ..., "adder": ..., "accumulator": ...}."""
    recorded = {}
    for service, loader in (("both", _common), ("adder", _adder), ("accumulator", _accumulator)):
        recorder = _Recorder()
        loader(recorder)
        recorded[service] = recorder.settings
    common = {setting.name for setting in recorded["both"]}
    for service in ("adder", "accumulator"):
        recorded[service] = [setting for setting in recorded[service] if setting.name not in common]
    return recorded
