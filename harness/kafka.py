"""Apache Kafka in KRaft mode on loopback: one combined node, or a quorum of three; for tests,
benchmarks and `make run`.

    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()                      # fetches jars if missing, formats, waits for a produce ack
    broker.create_topic("t-1", partitions=3)
    broker.kill(); broker.restart()     # SIGKILL, then start again on the same data dir and ports
    broker.stop()

    cluster = KafkaCluster(tmp_path / "k3")   # three combined nodes, controller quorum of three
    cluster.start(); cluster.nodes[0].kill(); cluster.nodes[0].start(); cluster.stop()

    python -m harness.kafka run --data-dir var/kafka --port 9092 --topic summation --topic summation.dlq
    python -m harness.kafka run --nodes 3 --data-dir /tmp/k3

Stdlib only, except topic creation and the readiness probe, which need kafka-python (a runtime
dependency of the app, so `.venv-run` has it). The jars come from scripts/kafka/fetch.sh (fetched on
first use). Each node runs `kafka.Kafka` from `java -cp libs/*` exactly as the upstream
`kafka-server-start.sh` does; storage is formatted once with `kafka.tools.StorageTool format`, and a
restart reuses the same data directory and ports.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from harness.ports import free_port

KAFKA_VERSION = "4.1.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
FETCH_SCRIPT = REPO_ROOT / "scripts" / "kafka" / "fetch.sh"
# Small heap; C1-only JIT and the serial GC start in a third of the time on a busy 2-core machine.
DEFAULT_JVM_OPTS = "-Xmx512m -Xms64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
READY_TIMEOUT_SECONDS = 120.0
PROBE_TOPIC = "__sumflow_probe"

LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.controller.name = kafka.controller
logger.controller.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class KafkaHarnessError(RuntimeError):
    """The broker could not be fetched, formatted or started; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("SUMFLOW_CACHE", str(Path.home() / ".cache" / "sumflow")))


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}" / "libs"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Fetch the jars of Kafka `version` into the cache if they are missing (idempotent, safe in parallel)."""
    libs = libs_dir(version)
    stamp = libs.parent / ".complete"
    if not stamp.is_file():
        result = subprocess.run(
            [str(FETCH_SCRIPT), "fetch"],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "KAFKA_VERSION": version},
        )
        if result.returncode != 0:
            raise KafkaHarnessError(f"fetching Kafka jars failed:\n{result.stdout}\n{result.stderr}")
    return libs


def java_binary() -> str:
    """Path to a Java >= 17 `java`; raises KafkaHarnessError (loudly) otherwise."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaHarnessError("Java 17+ is required for the Kafka broker: apt-get install -y openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise KafkaHarnessError(f"cannot read the Java version from {java}: {out.stderr.strip()}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise KafkaHarnessError(f"Kafka {KAFKA_VERSION} needs Java 17+, found Java {major} at {java}")
    return java


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL`: the child gets SIGKILL when the thread that started it dies, so an
    aborted test run never leaves a JVM behind. Only used from the main thread (a helper thread that
    restarts a process and then ends would otherwise kill it)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


@dataclass
class KraftNode:
    """One combined broker+controller JVM with its own data directory and fixed ports."""

    node_id: int
    data_dir: Path
    port: int
    controller_port: int
    voters: str = ""  # controller.quorum.voters (a static quorum), filled in by the cluster; "" leaves it out
    jvm_opts: str = DEFAULT_JVM_OPTS
    host: str = "127.0.0.1"
    extra_properties: dict[str, str] = field(default_factory=dict)
    format_args: list[str] = field(default_factory=list)  # e.g. --add-scram (SCRAM users at format time)
    kafka_version: str = KAFKA_VERSION  # the release whose jars run the node (change it, then start: an upgrade)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def properties(self, cluster_size: int) -> dict[str, str]:
        rf = str(min(cluster_size, 3))
        min_isr = "2" if cluster_size >= 3 else "1"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": rf,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            # A SIGKILLed node re-registers only after its old session expires (default 9 s).
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            "auto.create.topics.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(64 << 20),
            "log.retention.hours": "24",
        }
        if not self.voters:
            del props["controller.quorum.voters"]
        props.update(self.extra_properties)
        return props

    def write_config(self, cluster_size: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.properties(cluster_size).items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def _java_cmd(self, main_class: str, *args: str) -> list[str]:
        libs = ensure_jars(self.kafka_version)
        return [
            java_binary(),
            *self.jvm_opts.split(),
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def is_formatted(self) -> bool:
        return (self.data_dir / "data" / "meta.properties").is_file()

    def format(self, cluster_id: str) -> None:
        # `--cluster-id=ID`: a random id may start with "-", which the tool would read as an option
        config = str(self.config_path)
        cmd = self._java_cmd(
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", config, *self.format_args
        )
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise KafkaHarnessError(f"formatting {self.data_dir} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self.is_alive():
            return
        cmd = self._java_cmd("kafka.Kafka", str(self.config_path))
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%Y-%m-%dT%H:%M:%S')} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [*die_with_parent_prefix(), *cmd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop (SIGTERM: controlled shutdown), SIGKILL after `timeout`."""
        if not self.is_alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the broker dies without flushing or leaving the quorum."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the node logged after `offset` (a log_size() taken earlier): refusals say why there."""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


class KafkaCluster:
    """N combined KRaft nodes on loopback (default 3: a controller quorum of three)."""

    def __init__(
        self,
        data_dir: Path,
        nodes: int = 3,
        ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        jvm_opts: str | None = None,
        extra_properties: dict[str, str] | None = None,
        format_args: Sequence[str] = (),
        client_config: dict[str, object] | None = None,
        kafka_version: str = KAFKA_VERSION,
    ) -> None:
        """`extra_properties` override server.properties lines; `format_args` go to the storage format;
        `client_config` (kafka-python keyword arguments) is how the harness's own clients connect;
        `kafka_version` is the release every node starts with (jars from scripts/kafka/fetch.sh)."""
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.data_dir = Path(data_dir)
        ports = list(ports) if ports else [free_port() for _ in range(nodes)]
        controller_ports = list(controller_ports) if controller_ports else [free_port() for _ in range(nodes)]
        if len(ports) != nodes or len(controller_ports) != nodes:
            raise ValueError("one port and one controller port per node")
        voters = ",".join(f"{i + 1}@127.0.0.1:{controller_ports[i]}" for i in range(nodes))
        self.nodes = [
            KraftNode(
                node_id=i + 1,
                data_dir=self.data_dir if nodes == 1 else self.data_dir / f"node{i + 1}",
                port=ports[i],
                controller_port=controller_ports[i],
                voters=voters,
                jvm_opts=jvm_opts or DEFAULT_JVM_OPTS,
                extra_properties=dict(extra_properties or {}),
                format_args=list(format_args),
                kafka_version=kafka_version,
            )
            for i in range(nodes)
        ]
        self.client_config = dict(client_config or {})

    @property
    def bootstrap(self) -> str:
        """Comma-separated HOST:PORT of every node (a valid SUMFLOW_KAFKA_BOOTSTRAP)."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def replication(self) -> int:
        return min(len(self.nodes), 3)

    def prepare(self) -> None:
        """Write configs and format storage once (a restart keeps the formatted data)."""
        for version in {node.kafka_version for node in self.nodes}:
            ensure_jars(version)
        java_binary()
        for node in self.nodes:
            node.write_config(len(self.nodes))
        cluster_id_file = self.data_dir / "cluster.id"
        if not all(node.is_formatted() for node in self.nodes):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if not cluster_id_file.exists():
                cluster_id_file.write_text(new_cluster_id())
            cluster_id = cluster_id_file.read_text().strip()
            for node in self.nodes:
                if not node.is_formatted():
                    node.format(cluster_id)

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self.prepare()
        for node in self.nodes:
            node.start()
        self.wait_ready(timeout)

    def stop(self) -> None:
        # Stop concurrently: a lone last controller of a quorum waits for peers that are gone.
        threads = [threading.Thread(target=node.stop) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def restart(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Graceful stop, then start on the same data directories and ports."""
        self.stop()
        self.start(timeout)

    def kill_and_restart(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self.kill()
        self.start(timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        wait_ready(self.bootstrap, timeout, self.nodes, replication=self.replication, client_config=self.client_config)

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication: int | None = None,
        configs: dict[str, str] | None = None,
    ) -> str:
        replication = self.replication if replication is None else replication
        create_topics(
            self.bootstrap, [name], partitions, replication, configs=configs, client_config=self.client_config
        )
        return name

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- node {n.node_id} ---\n{n.log_tail(lines)}" for n in self.nodes)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KafkaBroker(KafkaCluster):
    """One combined broker+controller node: the single-node KRaft broker."""

    def __init__(self, data_dir: Path, port: int = 0, controller_port: int = 0, jvm_opts: str | None = None) -> None:
        super().__init__(
            data_dir,
            nodes=1,
            ports=[port] if port else None,
            controller_ports=[controller_port] if controller_port else None,
            jvm_opts=jvm_opts,
        )

    @property
    def node(self) -> KraftNode:
        return self.nodes[0]

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def pid(self) -> int | None:
        return self.node.pid

    @property
    def log_path(self) -> Path:
        return self.node.log_path

    def is_alive(self) -> bool:
        return self.node.is_alive()


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int = 1,
    replication: int = 1,
    timeout: float = 60.0,
    configs: dict[str, str] | None = None,
    client_config: dict[str, object] | None = None,
) -> None:
    """Create topics (idempotent) and wait until each has a leader for every partition."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    names = list(topics)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **dict(client_config or {})
    )
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(name, partitions, replication, topic_configs=dict(configs or {}))],
                    timeout_ms=int(timeout * 1000),
                )
        deadline = time.monotonic() + timeout
        while True:
            described = admin.describe_topics(names)
            ready = all(
                t.get("error_code", 0) == 0
                and len(t.get("partitions", [])) == partitions
                and all(p.get("leader_id", -1) >= 0 for p in t["partitions"])
                for t in described
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"topics {names} have no leaders after {timeout}s: {described}")
            time.sleep(0.2)
    finally:
        admin.close()


def _accepts_connections(bootstrap: str) -> bool:
    for address in bootstrap.split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                pass
        except OSError:
            return False
    return True


def wait_ready(
    bootstrap: str,
    timeout: float,
    nodes: Sequence[KraftNode] = (),
    replication: int = 1,
    client_config: dict[str, object] | None = None,
) -> None:
    """Block until a producer gets an acks=all acknowledgement on a probe topic."""
    client_config = dict(client_config or {})
    from kafka import KafkaProducer

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for node in nodes:
            if not node.is_alive():
                raise KafkaHarnessError(f"Kafka node {node.node_id} exited during start:\n{node.log_tail()}")
        if not _accepts_connections(bootstrap):
            time.sleep(0.3)
            continue
        producer = None
        try:
            create_topics(bootstrap, [PROBE_TOPIC], 1, replication, timeout=10.0, client_config=client_config)
            producer = KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000, max_block_ms=5000, **client_config
            )
            producer.send(PROBE_TOPIC, b"probe").get(timeout=10)
            return
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
            time.sleep(0.5)
        finally:
            if producer is not None:
                producer.close(timeout=2)
    tails = "\n".join(node.log_tail() for node in nodes)
    raise KafkaHarnessError(f"Kafka at {bootstrap} not ready after {timeout}s ({last_error!r})\n{tails}")


def console_produce(bootstrap: str, topic: str, lines: list[str], properties: dict[str, str]) -> None:
    """Write records with the broker's bundled Java console producer (the reference client).

    E.g. properties={"parse.headers": "true", "null.marker": "<NULL>"} and a line
    "traceparent:<NULL>\\t{...}" writes a record whose traceparent header value is null.
    """
    args = [java_binary(), "-cp", f"{ensure_jars()}/*", "org.apache.kafka.tools.ConsoleProducer"]
    args += ["--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "acks=all"]
    for key, value in properties.items():
        args += ["--property", f"{key}={value}"]
    done = subprocess.run(
        args, input="".join(f"{line}\n" for line in lines), text=True, capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise KafkaHarnessError(f"console producer failed ({done.returncode}): {done.stderr[-2000:]}")


def _run(args: argparse.Namespace) -> int:
    cluster = KafkaCluster(
        Path(args.data_dir),
        nodes=args.nodes,
        ports=[args.port + i for i in range(args.nodes)] if args.port else None,
        controller_ports=[args.controller_port + i for i in range(args.nodes)] if args.controller_port else None,
        jvm_opts=args.jvm_opts,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        started = time.monotonic()
        cluster.start(args.timeout)
        if args.topic:
            create_topics(cluster.bootstrap, args.topic, args.partitions, min(args.nodes, 3))
        print(f"kafka ready bootstrap={cluster.bootstrap} in {time.monotonic() - started:.1f}s", flush=True)
        while not stop.wait(1.0):
            for node in cluster.nodes:
                if not node.is_alive():
                    print(f"kafka node {node.node_id} exited:\n{node.log_tail()}", file=sys.stderr)
                    return 1
        return 0
    except KafkaHarnessError as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start KRaft node(s) in the foreground until SIGINT/SIGTERM")
    run.add_argument("--data-dir", required=True)
    run.add_argument("--nodes", type=int, default=1)
    run.add_argument("--port", type=int, default=0, help="client port of node 1 (others +1, +2); 0 = free port")
    run.add_argument("--controller-port", type=int, default=0)
    run.add_argument("--topic", action="append", default=[], help="topic to create once ready (repeatable)")
    run.add_argument("--partitions", type=int, default=1)
    run.add_argument("--jvm-opts", default=DEFAULT_JVM_OPTS)
    run.add_argument("--timeout", type=float, default=READY_TIMEOUT_SECONDS)
    sub.add_parser("fetch", help="fetch the jars into the cache")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(ensure_jars())
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
