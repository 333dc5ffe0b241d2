"""The kafka role's operations on a real three-node KRaft cluster on loopback: a rolling upgrade
4.0.2 -> 4.1.1 gated by the role's replication check, finalized by playbooks/kafka-finalize.yml, then
the topics' replication factor raised from 1 to 3 by playbooks/kafka-replication.yml.

The playbooks and task files are the repository's, run by the real ansible-playbook against an inventory
of three hosts that are all this machine (local connection; each host's kafka_port is one node's). The
role's admin-client.properties and kafka-tool wrapper are rendered from its templates (security off:
the harness cluster is PLAINTEXT); kafka_home is a symlink to the release's jars, re-pointed on upgrade
as the release_artifact role does. The nodes are restarted by the harness (systemd's part of the
rolling restart is not here); between restarts the role's own gate (tasks/wait_replicated.yml) runs.

What must hold: finalize refuses a cluster whose nodes have not all got the release; its check mode
changes nothing; it raises metadata.version to 4.1-IV1 (and eligible.leader.replicas.version with it)
but leaves kraft.version at 0 (a static quorum stays static); a second run changes nothing. The
replication playbook's check mode moves nothing; it gives every partition of the topics three
replicas and min.insync.replicas 2; a second run changes nothing; every record written before the
upgrade is still there. The gate fails while a node is down and passes when it is back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from harness.kafka import KafkaCluster, java_binary, libs_dir
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, REPO, role_with_real_parts, run_playbook

pytestmark = pytest.mark.timeout(900)

OLD, NEW = "4.0.2", "4.1.1"
HOSTS = ("kafka-1", "kafka-2", "kafka-3")
TOPICS = [{"name": "summation", "partitions": 3}, {"name": "summation.dlq", "partitions": 1}]
RECORDS = 300


@dataclass
class Ops:
    root: Path
    cluster: KafkaCluster
    extra: dict[str, Any]

    @property
    def home(self) -> Path:
        return self.root / "kafka"

    def point_home_at(self, version: str) -> None:
        if self.home.is_symlink():
            self.home.unlink()
        self.home.symlink_to(libs_dir(version).parent, target_is_directory=True)

    def playbook(self, name: str, *args: str, extra: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        return run_playbook(
            self.root / "inventory.yml",
            REPO / "playbooks" / name,
            {**self.extra, **(extra or {})},
            *args,
            tmp=self.root,
            roles_path=REPO / "roles",
        )

    def playbook_file(self, path: Path, extra: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        return run_playbook(self.root / "inventory.yml", path, {**self.extra, **(extra or {})}, tmp=self.root)

    def tool(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.root / "bin/kafka-tool"), *args], capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def features(self) -> dict[str, str]:
        out = self.tool(
            "org.apache.kafka.tools.FeatureCommand", "--bootstrap-server", self.cluster.bootstrap, "describe"
        )
        return dict(re.findall(r"Feature: (\S+)\s.*FinalizedVersionLevel: (\S+)", out))

    def replicas(self) -> dict[tuple[str, int], list[int]]:
        out = self.tool(
            "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", self.cluster.bootstrap, "--describe"
        )
        return {
            (topic, int(partition)): [int(r) for r in replicas.split(",")]
            for topic, partition, replicas in re.findall(
                r"Topic: (\S+)\s+Partition: (\d+)\s+Leader: \S+\s+Replicas: (\S+)", out
            )
            if topic in {t["name"] for t in TOPICS}
        }

    def min_isr(self, topic: str) -> str:
        out = self.tool(
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            self.cluster.bootstrap,
            "--describe",
            "--topic",
            topic,
        )
        return re.search(r"min\.insync\.replicas=(\d+)", out).group(1)  # type: ignore[union-attr]


def _changed(output: str) -> int:
    counts = [int(n) for n in re.findall(r"kafka-\d\s+: ok=\d+\s+changed=(\d+)", output)]
    assert len(counts) == len(HOSTS), output[-3000:]
    return sum(counts)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    root = tmp_path_factory.mktemp("kafka-ops")
    cluster = KafkaCluster(root / "cluster", nodes=3, kafka_version=OLD)
    (root / "etc-kafka").mkdir()
    (root / "bin").mkdir()
    inventory = {
        "all": {
            "hosts": {
                host: {
                    "ansible_host": "127.0.0.1",
                    "kafka_port": node.port,
                    "kafka_controller_port": node.controller_port,
                }
                for host, node in zip(HOSTS, cluster.nodes, strict=True)
            },
            "children": {"kafka": {"hosts": {host: {} for host in HOSTS}}},
        }
    }
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    extra = {
        **LOCAL_CONNECTION,
        "kafka_security_enabled": False,
        "kafka_advertised_host": "127.0.0.1",
        "kafka_config_dir": str(root / "etc-kafka"),
        "kafka_tool": str(root / "bin/kafka-tool"),
        "kafka_java_bin": java_binary(),
        "kafka_home": str(root / "kafka"),
        "kafka_admin_timeout_ms": 30000,
        "kafka_topics": TOPICS,
        "sumflow_controller_cache": str(root / "controller-cache"),
    }
    made = Ops(root, cluster, extra)
    made.point_home_at(OLD)
    role_with_real_parts(
        root,
        "render_kafka_tools",
        REPO / "roles/kafka",
        [
            {
                "name": f"render {dest}",
                "ansible.builtin.template": {"src": src, "dest": dest, "mode": mode},
                "run_once": True,
            }
            for src, dest, mode in (
                ("admin-client.properties.j2", "{{ kafka_config_dir }}/admin-client.properties", "0600"),
                ("tools-log4j2.properties.j2", "{{ kafka_config_dir }}/tools-log4j2.properties", "0600"),
                ("kafka-tool.sh.j2", "{{ kafka_tool }}", "0755"),
            )
        ],
    )
    (root / "render.yml").write_text(
        yaml.safe_dump([{"name": "render", "hosts": "kafka", "gather_facts": False, "roles": ["render_kafka_tools"]}])
    )
    _ok(run_playbook(root / "inventory.yml", root / "render.yml", extra, tmp=root, roles_path=root / "roles"))
    try:
        cluster.start()
        yield made
    finally:
        cluster.stop()
        shutil.rmtree(root / "cluster", ignore_errors=True)


def _produce(bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30000)
    try:
        for i in range(RECORDS):
            producer.send("summation", key=str(i).encode(), value=f"record-{i}".encode())
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=5)


def _count(bootstrap: str) -> int:
    """The records of `summation`, read from the beginning (stops at RECORDS or after 20 s of silence)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=20000
    )
    try:
        consumer.assign([TopicPartition("summation", p) for p in range(3)])
        seen = 0
        for _record in consumer:
            seen += 1
            if seen == RECORDS:
                break
        return seen
    finally:
        consumer.close()


def test_rolling_upgrade_then_finalize_then_raise_the_replication_factor(ops: Ops) -> None:
    cluster = ops.cluster
    # The topics as the role created them when the cluster had one broker: RF 1, min.insync.replicas 1.
    for topic in TOPICS:
        cluster.create_topic(topic["name"], topic["partitions"], replication=1, configs={"min.insync.replicas": "1"})
    _produce(cluster.bootstrap)
    assert ops.features()["metadata.version"] == "4.0-IV3"
    assert ops.features()["kraft.version"] == "0"

    # Finalizing before the nodes have the release is refused (and changes nothing).
    refused = ops.playbook("kafka-finalize.yml", extra={"kafka_version": NEW})
    assert refused.returncode != 0
    assert f"not Kafka {NEW}" in refused.stdout, refused.stdout[-3000:]

    # The binaries' upgrade, one node at a time, each restart between two passes of the role's gate.
    gate = REPO / "roles/kafka/tasks/wait_replicated.yml"
    (ops.root / "gate.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "name": "gate",
                    "hosts": "kafka[0]",
                    "gather_facts": False,
                    "vars_files": [str(REPO / "roles/kafka/defaults/main.yml")],
                    "tasks": [
                        {
                            "name": "the role's replication gate",
                            "ansible.builtin.include_tasks": str(gate),
                            "vars": {
                                "kafka_replicated_host": "{{ inventory_hostname }}",
                                "kafka_replicated_bootstrap": cluster.bootstrap,
                            },
                        }
                    ],
                }
            ]
        )
    )
    for node in cluster.nodes:
        _ok(ops.playbook_file(ops.root / "gate.yml"))
        node.stop()
        node.kafka_version = NEW
        node.start()
    cluster.wait_ready()
    _ok(ops.playbook_file(ops.root / "gate.yml"))
    ops.point_home_at(NEW)
    assert ops.features()["metadata.version"] == "4.0-IV3", "the new binaries run at the old features"

    preview = _ok(ops.playbook("kafka-finalize.yml", "--check", extra={"kafka_version": NEW}))
    assert _changed(preview) == 1, preview[-4000:]  # the upgrade, validated with --dry-run
    assert ops.features()["metadata.version"] == "4.0-IV3", "check mode changed the features"

    first = _ok(ops.playbook("kafka-finalize.yml", extra={"kafka_version": NEW}))
    assert _changed(first) == 1, first[-4000:]
    features = ops.features()
    assert features["metadata.version"] == "4.1-IV1"
    assert features["eligible.leader.replicas.version"] == "1"
    assert features["kraft.version"] == "0", "finalizing must not turn the static quorum dynamic"
    again = _ok(ops.playbook("kafka-finalize.yml", extra={"kafka_version": NEW}))
    assert _changed(again) == 0, again[-4000:]

    # The replication factor: RF 1 -> 3 by reassignment, min.insync.replicas 1 -> 2 afterwards.
    assert {len(r) for r in ops.replicas().values()} == {1}
    _ok(ops.playbook("kafka-replication.yml", "--check", extra={"kafka_version": NEW}))
    assert {len(r) for r in ops.replicas().values()} == {1}, "check mode reassigned partitions"
    raised = _ok(ops.playbook("kafka-replication.yml", extra={"kafka_version": NEW}))
    replicas = ops.replicas()
    assert len(replicas) == 4
    assert all(sorted(r) == [1, 2, 3] for r in replicas.values()), replicas
    assert [ops.min_isr(t["name"]) for t in TOPICS] == ["2", "2"]
    assert _changed(raised) > 0
    steady = _ok(ops.playbook("kafka-replication.yml", extra={"kafka_version": NEW}))
    assert _changed(steady) == 0, steady[-4000:]
    assert _count(cluster.bootstrap) == RECORDS

    # The gate sees a stopped node (its replicas leave the ISR) and passes again once it is back.
    cluster.nodes[2].stop()
    held = ops.playbook_file(ops.root / "gate.yml", extra={"kafka_restart_wait_seconds": 5})
    assert held.returncode != 0, held.stdout[-3000:]
    assert "Partition:" in held.stdout
    cluster.nodes[2].start()
    cluster.wait_ready()
    _ok(ops.playbook_file(ops.root / "gate.yml"))
