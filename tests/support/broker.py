"""Python API over the KRaft harness in scripts/kafka/kraft.py: real brokers for tests.

broker = KafkaBroker(tmp_path / "kafka")
broker.start()                      # fetches jars if missing, formats, waits for a produce ack
broker.create_topic("t-1", partitions=3)
broker.kill(); broker.restart()     # SIGKILL, then start again on the same data dir and port
broker.stop()

cluster = KafkaCluster(tmp_path / "k3")   # three combined nodes, controller quorum of three
cluster.start(); cluster.nodes[0].kill(); cluster.nodes[0].start(); cluster.stop()
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_kraft() -> ModuleType:
    name = "sumflow_kraft_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / "kafka" / "kraft.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


kraft = _load_kraft()
KafkaHarnessError = kraft.KafkaHarnessError
free_port = kraft.free_port


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class KafkaCluster:
    """N combined KRaft nodes on loopback (default 3: a controller quorum of three)."""

    def __init__(self, data_dir: Path, nodes: int = 3, jvm_opts: str | None = None) -> None:
        self._cluster = kraft.KraftCluster(Path(data_dir), nodes=nodes, jvm_opts=jvm_opts or kraft.DEFAULT_JVM_OPTS)

    @property
    def nodes(self) -> list:
        """kraft.KraftNode objects: .start(), .stop(), .kill(), .is_alive(), .bootstrap, .log_path."""
        return self._cluster.nodes

    @property
    def bootstrap(self) -> str:
        """Comma-separated HOST:PORT of every node (a valid SUMFLOW_KAFKA_BOOTSTRAP)."""
        return self._cluster.bootstrap

    @property
    def replication(self) -> int:
        return min(len(self.nodes), 3)

    def start(self, timeout: float = 120.0) -> None:
        self._cluster.start(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        self._cluster.wait_ready(timeout)

    def stop(self) -> None:
        self._cluster.stop()

    def kill(self) -> None:
        self._cluster.kill()

    def restart(self, timeout: float = 120.0) -> None:
        """Graceful stop, then start on the same data directories and ports."""
        self.stop()
        self.start(timeout)

    def kill_and_restart(self, timeout: float = 120.0) -> None:
        self.kill()
        self.start(timeout)

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication: int | None = None,
        configs: dict[str, str] | None = None,
    ) -> str:
        replication = self.replication if replication is None else replication
        kraft.create_topics(self.bootstrap, [name], partitions, replication, configs=configs)
        return name

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- node {n.node_id} ---\n{n.log_tail(lines)}" for n in self.nodes)

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KafkaBroker(KafkaCluster):
    """One combined broker+controller node: the single-node KRaft harness."""

    def __init__(self, data_dir: Path, jvm_opts: str | None = None) -> None:
        super().__init__(data_dir, nodes=1, jvm_opts=jvm_opts or kraft.DEFAULT_JVM_OPTS)

    @property
    def node(self):
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

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self


def console_produce(bootstrap: str, topic: str, lines: list[str], properties: dict[str, str]) -> None:
    """Write records with the broker's bundled Java console producer (the reference client).

    E.g. properties={"parse.headers": "true", "null.marker": "<NULL>"} and a line
    "traceparent:<NULL>\\t{...}" writes a record whose traceparent header value is null.
    """
    import subprocess

    args = [kraft.java_binary(), "-cp", f"{kraft.ensure_jars()}/*", "org.apache.kafka.tools.ConsoleProducer"]
    args += ["--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "acks=all"]
    for key, value in properties.items():
        args += ["--property", f"{key}={value}"]
    done = subprocess.run(
        args, input="".join(f"{line}\n" for line in lines), text=True, capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise KafkaHarnessError(f"console producer failed ({done.returncode}): {done.stderr[-2000:]}")
