"""The kafka role's dynamic controller quorum on real KRaft nodes on loopback: a cluster formatted by
the role with one node, then grown to three nodes that join a running quorum.

The role's own parts run through the real ansible-playbook against hosts that are all this machine
(local connection, each host's ports and directories one node's): node_fact.yml, the templates
(server.properties with kafka_quorum_mode dynamic, the admin settings, kafka-tool,
kafka-node-caught-up), cluster_id.yml and format.yml (the role's `kafka-storage format` argv, as root
instead of the kafka user), then quorum_join.yml. The harness only runs the JVMs on the rendered
server.properties (systemd's part, and the rolling restart of the first node whose bootstrap servers
changed, are the harness's stop and start).

Run twice: PLAINTEXT, and with the role's secure defaults (TLS on both listeners from harness.pki
certificates, SCRAM users at format time, the admin's PLAIN login on the controller listener, which
add-controller uses with the node's own settings).

What must hold: the first node is formatted with --initial-controllers (itself, kraft.version 1) and
serves; the nodes added to the group later are formatted with --no-initial-controllers for the same
cluster id, start as observers, and quorum_join.yml makes each a caught-up voter with add-controller; a
second run changes nothing; a topic at RF 3 then takes acks=all writes on the grown cluster.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer

from harness.kafka import KafkaHarnessError, KraftNode, create_topics, java_binary, libs_dir, wait_ready
from harness.pki import TestPki
from harness.ports import free_port
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, REPO, role_with_real_parts, run_playbook

pytestmark = pytest.mark.timeout(900)

HOSTS = ("kafka-1", "kafka-2", "kafka-3")
JOIN_WAIT_SECONDS = 180
VOTERS_SNAPSHOT = "data/__cluster_metadata-0/00000000000000000000-0000000000.checkpoint"


@dataclass
class Quorum:
    root: Path
    nodes: list[KraftNode]
    extra: dict[str, Any]
    secure: bool

    @property
    def client(self) -> dict[str, Any]:
        """kafka-python settings of the role's admin (nothing without security)."""
        if not self.secure:
            return {}
        password = (self.root / "controller-cache/credentials/kafka_admin_password").read_text().strip()
        return {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(self.root / "pki-out/ca.crt"),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "admin",
            "sasl_plain_password": password,
        }

    def inventory(self, members: int) -> Path:
        hosts = {
            host: {
                "ansible_host": "127.0.0.1",
                "kafka_node_id": node.node_id,
                "kafka_port": node.port,
                "kafka_controller_port": node.controller_port,
                "kafka_config_dir": str(node.data_dir),
                "kafka_log_dirs": str(node.data_dir / "data"),
                "kafka_tls_dir": str(node.data_dir / "tls"),
            }
            for host, node in zip(HOSTS[:members], self.nodes[:members], strict=True)
        }
        path = self.root / f"inventory-{members}.yml"
        path.write_text(
            yaml.safe_dump({"all": {"hosts": hosts, "children": {"kafka": {"hosts": {h: {} for h in hosts}}}}})
        )
        return path

    def playbook(self, name: str, members: int) -> str:
        proc = run_playbook(
            self.inventory(members), self.root / name, self.extra, tmp=self.root, roles_path=self.root / "roles"
        )
        assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
        return proc.stdout

    def roles(self) -> dict[int, str]:
        """{node id: Leader/Follower/Observer} as the quorum describes itself."""
        controllers = ",".join(f"127.0.0.1:{n.controller_port}" for n in self.nodes if n.is_alive())
        done = subprocess.run(
            [
                str(self.root / "bin/kafka-tool"),
                "org.apache.kafka.tools.MetadataQuorumCommand",
                "--bootstrap-controller",
                controllers,
                "--command-config",
                str(self.nodes[0].data_dir / "admin-controller.properties"),
                "describe",
                "--replication",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return {int(i): s for i, s in re.findall(r"^(\d+)\s+\S+\s+\d+\s+\d+\s+\S+\s+\S+\s+(\w+)", done.stdout, re.M)}

    def caught_up_voter(self, node: KraftNode) -> bool:
        done = subprocess.run(
            [
                str(self.root / "bin/kafka-node-caught-up"),
                str(node.node_id),
                "100",
                f"127.0.0.1:{node.controller_port}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return done.returncode == 0


def _changed(output: str) -> dict[str, int]:
    return {host: int(n) for host, n in re.findall(r"(kafka-\d)\s+: ok=\d+\s+changed=(\d+)", output)}


def _tls(root: Path, nodes: list[KraftNode]) -> None:
    """What roles/pki installs and tls.yml makes, per node: ca.crt and the PEM key store (key, then
    certificate) of a certificate naming 127.0.0.1, the nodes' advertised address."""
    pki = TestPki.create(root / "pki")
    issued = pki.issue("kafka", server=True, client=True)
    (root / "pki-out").mkdir()
    shutil.copy(pki.ca_cert, root / "pki-out/ca.crt")
    for node in nodes:
        tls = node.data_dir / "tls"
        tls.mkdir(parents=True)
        shutil.copy(pki.ca_cert, tls / "ca.crt")
        shutil.copy(issued.chain, tls / "kafka-keystore.pem")


@pytest.fixture(scope="module", params=[False, True], ids=["plaintext", "secure"])
def quorum(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Quorum]:
    secure: bool = request.param
    root = tmp_path_factory.mktemp("kafka-quorum")
    (root / "bin").mkdir()
    nodes = [
        KraftNode(node_id=i + 1, data_dir=root / f"node{i + 1}", port=free_port(), controller_port=free_port())
        for i in range(len(HOSTS))
    ]
    for node in nodes:
        node.write_config(3)  # the harness's log4j2 file; server.properties is rendered over it
    if secure:
        _tls(root, nodes)
    extra = {
        **LOCAL_CONNECTION,
        "kafka_quorum_mode": "dynamic",
        "kafka_security_enabled": secure,
        "kafka_user": "root",
        "kafka_advertised_host": "127.0.0.1",
        "kafka_listen_host": "127.0.0.1",
        "kafka_tool": str(root / "bin/kafka-tool"),
        "kafka_java_bin": java_binary(),
        "kafka_home": str(libs_dir().parent),
        "kafka_admin_timeout_ms": 30000,
        "kafka_num_partitions": 1,
        "sumflow_controller_cache": str(root / "controller-cache"),
    }
    templates = [
        ("server.properties.j2", "{{ kafka_config_dir }}/server.properties", False),
        ("admin-client.properties.j2", "{{ kafka_config_dir }}/admin-client.properties", False),
        ("admin-controller.properties.j2", "{{ kafka_config_dir }}/admin-controller.properties", False),
        ("tools-log4j2.properties.j2", "{{ kafka_config_dir }}/tools-log4j2.properties", False),
        ("kafka-tool.sh.j2", "{{ kafka_tool }}", True),
        ("kafka-node-caught-up.sh.j2", str(root / "bin/kafka-node-caught-up"), True),
    ]
    role_with_real_parts(
        root,
        "kafka_quorum",
        REPO / "roles/kafka",
        [
            {"name": "publish the node", "ansible.builtin.import_tasks": "node_fact.yml"},
            *[
                {
                    "name": f"render {dest}",
                    "ansible.builtin.template": {"src": src, "dest": dest, "mode": "0755" if once else "0600"},
                    "run_once": once,
                }
                for src, dest, once in templates
            ],
            {"name": "the cluster id", "ansible.builtin.import_tasks": "cluster_id.yml"},
            {"name": "format once", "ansible.builtin.import_tasks": "format.yml"},
        ],
        task_files=("node_fact.yml", "cluster_id.yml", "format.yml", "quorum_join.yml"),
    )
    (root / "configure.yml").write_text(
        yaml.safe_dump([{"name": "configure", "hosts": "kafka", "gather_facts": False, "roles": ["kafka_quorum"]}])
    )
    join = [
        {"name": "publish", "ansible.builtin.include_role": {"name": "kafka_quorum", "tasks_from": "node_fact"}},
        {"name": "join", "ansible.builtin.include_role": {"name": "kafka_quorum", "tasks_from": "quorum_join"}},
    ]
    (root / "join.yml").write_text(
        yaml.safe_dump([{"name": "join", "hosts": "kafka", "gather_facts": False, "tasks": join}], sort_keys=False)
    )
    made = Quorum(root, nodes, extra, secure)
    try:
        yield made
    finally:
        for node in nodes:
            node.stop()


def _wait_voter(quorum: Quorum, node: KraftNode) -> None:
    deadline = time.monotonic() + JOIN_WAIT_SECONDS
    while not quorum.caught_up_voter(node):
        if time.monotonic() > deadline:
            raise KafkaHarnessError(f"node {node.node_id} is not a caught-up voter: {quorum.roles()}")
        time.sleep(2)


def test_a_dynamic_quorum_grows_from_one_node_to_three(quorum: Quorum) -> None:
    first, second, third = quorum.nodes
    out = quorum.playbook("configure.yml", members=1)
    properties = (first.data_dir / "server.properties").read_text()
    assert f"controller.quorum.bootstrap.servers=127.0.0.1:{first.controller_port}" in properties.splitlines()
    assert "controller.quorum.voters" not in properties
    assert first.is_formatted(), out[-3000:]
    # --initial-controllers: the voter set is in the metadata log's first snapshot, and the directory id is
    # the one the list named for this node (derived from the cluster id and node id)
    assert (first.data_dir / VOTERS_SNAPSHOT).is_file()
    assert re.search(r"^directory\.id=[0-9a-f]{21}A$", (first.data_dir / "data/meta.properties").read_text(), re.M)
    first.start()
    wait_ready(first.bootstrap, 180, [first], 1, client_config=quorum.client)
    assert quorum.roles() == {1: "Leader"}

    # The group grows: the first node's bootstrap servers change (restarted, as the rolling restart
    # would), the new nodes are formatted to join and start as observers.
    quorum.playbook("configure.yml", members=3)
    cluster_id = re.search(r"cluster\.id=(\S+)", (first.data_dir / "data/meta.properties").read_text())
    assert cluster_id
    for node in (second, third):
        assert f"cluster.id={cluster_id.group(1)}" in (node.data_dir / "data/meta.properties").read_text()
        assert not (node.data_dir / VOTERS_SNAPSHOT).exists()  # --no-initial-controllers: no voter set
    first.stop()
    first.start()
    second.start()
    third.start()
    wait_ready(",".join(n.bootstrap for n in quorum.nodes), 180, quorum.nodes, 1, client_config=quorum.client)

    joined = quorum.playbook("join.yml", members=3)
    # per joining node: its add-controller settings written, then add-controller
    assert _changed(joined) == {"kafka-1": 0, "kafka-2": 2, "kafka-3": 2}, joined[-6000:]
    for node in quorum.nodes:
        _wait_voter(quorum, node)
    roles = quorum.roles()
    assert set(roles) == {1, 2, 3}, roles
    assert set(roles.values()) <= {"Leader", "Follower"}, roles
    again = quorum.playbook("join.yml", members=3)
    assert _changed(again) == {"kafka-1": 0, "kafka-2": 0, "kafka-3": 0}, again[-4000:]

    bootstrap = ",".join(n.bootstrap for n in quorum.nodes)
    create_topics(bootstrap, ["grown"], 3, 3, configs={"min.insync.replicas": "2"}, client_config=quorum.client)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30000, **quorum.client)
    try:
        for i in range(30):
            producer.send("grown", f"r{i}".encode()).get(timeout=60)
    finally:
        producer.close(timeout=5)
