"""The kafka and sumflow roles' secure defaults on a real broker: rendered by Ansible, run on loopback.

With the real ansible-playbook and the roles' own defaults, vars and templates, this renders
server.properties, both admin client settings, the kafka-tool wrapper and the quorum check of
roles/kafka, and the two EnvironmentFiles of roles/sumflow, for a one-node inventory on this machine
(ports, paths and the jars moved to a temporary directory; nothing else overridden). The passwords are
the ones the roles generate on the controller. The certificates come from harness.pki in the layout
the pki role installs (ca.crt, tls.crt, tls.key), and the key store is made from them with the
command of roles/kafka/tasks/tls.yml. A KRaft node runs from that server.properties, and the role's
own run-phase task files (topics.yml; access.yml: SCRAM users, ACLs) run against it twice.

What a deployment must show: a plaintext client is refused on both listeners; the role's tooling
works over TLS on both (topics, ACLs, users, the quorum check); an authenticated user without ACLs
cannot write `summation`; the adder and the accumulator, configured by the sumflow role's env files,
count a stream exactly as their least-privileged users, and the accumulator can use the DLQ; the
broker denies them nothing; a second run of the role changes nothing; no secret reaches the output.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAuthorizationFailedError

from harness.kafka import KraftNode, java_binary, libs_dir, new_cluster_id, wait_ready
from harness.pki import TestPki
from harness.ports import free_port
from harness.processes import AccumulatorProcess, AdderProcess, ServiceError
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, role_with_real_parts, run_playbook

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
KAFKA_ROLE = REPO / "roles/kafka"
SUMFLOW_ROLE = REPO / "roles/sumflow"
HOST = "kafka-1"
CALLS = 100


@dataclass
class Deployment:
    root: Path
    node: KraftNode
    etc_kafka: Path
    etc_sumflow: Path
    credentials: Path
    playbook_output: str

    @property
    def bootstrap(self) -> str:
        return self.node.bootstrap

    @property
    def controller(self) -> str:
        return f"127.0.0.1:{self.node.controller_port}"

    def password(self, user: str) -> str:
        return (self.credentials / f"kafka_{user}_password").read_text().strip()

    def client(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(self.etc_kafka / "tls/ca.crt"),
            "ssl_check_hostname": True,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": password if password is not None else self.password(user),
        }

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "bin/kafka-tool"), *args], capture_output=True, text=True, timeout=180, check=False
        )

    def log_size(self) -> int:
        return self.node.log_size()

    def log_since(self, offset: int) -> str:
        return self.node.log_since(offset)

    def env_file(self, service: str) -> dict[str, str]:
        lines = (self.etc_sumflow / f"{service}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _template(src: str, dest: str, mode: str = "0600") -> dict[str, Any]:
    return {"name": f"render {dest}", "ansible.builtin.template": {"src": src, "dest": dest, "mode": mode}}


def _playbook(root: Path, name: str, extra: dict[str, Any]) -> str:
    proc = run_playbook(root / "inventory.yml", root / name, extra, tmp=root, roles_path=root / "roles")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout


def _changed(output: str) -> int:
    match = re.search(rf"{HOST}\s+: ok=\d+\s+changed=(\d+)", output)
    assert match, output[-2000:]
    return int(match.group(1))


def _write_keystore(tls_dir: Path, key: Path, cert: Path) -> None:
    """kafka-keystore.pem as tls.yml makes it: its own openssl argv turns tls.key into PKCS#8, then
    the key and the certificate. The key is given in the traditional form ("EC PRIVATE KEY", what
    community.crypto writes by default), which Kafka's PEM key store cannot read by itself."""
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    traditional = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    (tls_dir / "tls.key").write_bytes(traditional)
    shutil.copy(cert, tls_dir / "tls.crt")
    tasks = yaml.safe_load((KAFKA_ROLE / "tasks/tls.yml").read_text())
    (block,) = [t["block"] for t in tasks if t["name"] == "Write the PEM key store (key, then certificate)"]
    (argv,) = [t["ansible.builtin.command"]["argv"] for t in block if t["name"] == "Read the key as PKCS#8"]
    argv = [arg.replace("{{ kafka_tls_dir }}", str(tls_dir)) for arg in argv]
    pkcs8 = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    assert pkcs8.startswith("-----BEGIN PRIVATE KEY-----"), "not PKCS#8"
    (tls_dir / "kafka-keystore.pem").write_text(f"{pkcs8.strip()}\n{cert.read_text().strip()}\n")


def _build(root: Path, pki: TestPki) -> dict[str, Any]:
    etc_kafka, etc_sumflow, node_dir = root / "etc-kafka", root / "etc-sumflow", root / "node"
    for directory in (etc_kafka / "tls", etc_sumflow / "tls", root / "bin", node_dir):
        directory.mkdir(parents=True)
    # The files roles/pki installs and the key store roles/kafka/tasks/tls.yml writes from them.
    broker_cert = pki.issue(HOST, server=True, client=True)
    shutil.copy(pki.ca_cert, etc_kafka / "tls/ca.crt")
    _write_keystore(etc_kafka / "tls", broker_cert.key, broker_cert.cert)
    shutil.copy(pki.ca_cert, etc_sumflow / "tls/ca.crt")
    (root / "inventory.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {HOST: {"ansible_host": "127.0.0.1"}},
                    "children": {group: {"hosts": {HOST: {}}} for group in ("kafka", "adder", "accumulator")},
                }
            }
        )
    )
    port, controller_port = free_port(), free_port()
    extra = {
        **LOCAL_CONNECTION,
        "sumflow_controller_cache": str(root / "controller-cache"),
        "kafka_config_dir": str(etc_kafka),
        "kafka_log_dirs": str(node_dir / "data"),
        "kafka_listen_host": "127.0.0.1",
        "kafka_port": port,
        "kafka_controller_port": controller_port,
        "kafka_tool": str(root / "bin/kafka-tool"),
        "kafka_java_bin": java_binary(),
        "kafka_home": str(libs_dir().parent),
        "kafka_admin_timeout_ms": 30000,
        "sumflow_config_dir": str(etc_sumflow),
        "sumflow_kafka_port": port,
    }
    role_with_real_parts(
        root,
        "render_kafka",
        KAFKA_ROLE,
        [
            _template("server.properties.j2", "{{ kafka_config_dir }}/server.properties"),
            _template("admin-client.properties.j2", "{{ kafka_config_dir }}/admin-client.properties"),
            _template("admin-controller.properties.j2", "{{ kafka_config_dir }}/admin-controller.properties"),
            _template("tools-log4j2.properties.j2", "{{ kafka_config_dir }}/tools-log4j2.properties"),
            _template("kafka-tool.sh.j2", "{{ kafka_tool }}", "0755"),
            _template("kafka-node-caught-up.sh.j2", str(root / "bin/kafka-node-caught-up"), "0755"),
            {
                "name": "the storage format arguments",
                "ansible.builtin.copy": {
                    "content": "{{ kafka_scram_format_args | to_json }}",
                    "dest": str(root / "format-args.json"),
                    "mode": "0600",
                },
                "no_log": True,
            },
        ],
        task_files=("topics.yml", "access.yml"),
    )
    role_with_real_parts(
        root,
        "render_sumflow",
        SUMFLOW_ROLE,
        [
            _template(f"{service}.env.j2", f"{{{{ sumflow_config_dir }}}}/{service}.env")
            for service in ("adder", "accumulator")
        ],
    )
    (root / "render.yml").write_text(
        yaml.safe_dump(
            [{"hosts": "kafka", "gather_facts": False, "roles": ["render_kafka", "render_sumflow"]}], sort_keys=False
        )
    )
    run_phase = [
        {"ansible.builtin.include_role": {"name": "render_kafka", "tasks_from": task_file}}
        for task_file in ("topics", "access")
    ]
    (root / "run-phase.yml").write_text(
        yaml.safe_dump([{"hosts": "kafka", "gather_facts": False, "tasks": run_phase}], sort_keys=False)
    )
    return extra


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("kafka-role")
    pki = TestPki.create(root / "pki")
    extra = _build(root, pki)
    output = _playbook(root, "render.yml", extra)
    node = KraftNode(
        node_id=1,
        data_dir=root / "node",
        port=extra["kafka_port"],
        controller_port=extra["kafka_controller_port"],
        format_args=json.loads((root / "format-args.json").read_text()),
    )
    node.write_config(1)  # the harness's log4j2 file; server.properties is the rendered one
    shutil.copy(root / "etc-kafka/server.properties", node.config_path)
    node.format(new_cluster_id())
    deployment = Deployment(
        root, node, root / "etc-kafka", root / "etc-sumflow", root / "controller-cache/credentials", output
    )
    node.start()
    try:
        wait_ready(node.bootstrap, 180, [node], 1, client_config=deployment.client("admin"))
        # the role's run phase: topics, then SCRAM users (no digest recorded here: all set again, as after
        # a password change) and the ACLs; then once more: nothing changes
        first = _playbook(root, "run-phase.yml", extra)
        second = _playbook(root, "run-phase.yml", extra)
        deployment.playbook_output = "\n".join((output, first, second))
        assert _changed(first) > 0
        assert _changed(second) == 0, second[-4000:]
        yield deployment
    finally:
        node.stop()


def test_the_rendered_config_is_tls_scram_and_acls(deployment: Deployment) -> None:
    properties = (deployment.etc_kafka / "server.properties").read_text()
    for line in (
        f"listeners=SASL_SSL://127.0.0.1:{deployment.node.port},CONTROLLER://127.0.0.1:{deployment.node.controller_port}",
        "listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:broker;User:admin",
    ):
        assert line in properties.splitlines()
    assert "PLAINTEXT" not in properties
    # generated once on the controller, private there, never printed by Ansible
    for user in ("broker", "admin", "sumflow-adder", "sumflow-accumulator"):
        path = deployment.credentials / f"kafka_{user}_password"
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(deployment.password(user)) == 40
        assert deployment.password(user) not in deployment.playbook_output


def test_plaintext_clients_are_refused_on_both_listeners(deployment: Deployment) -> None:
    for address in (deployment.bootstrap, deployment.controller):
        mark = deployment.log_size()
        with pytest.raises(KafkaError, match="Unable to bootstrap"):
            KafkaProducer(bootstrap_servers=address, bootstrap_timeout_ms=5000, request_timeout_ms=3000)
        assert "(SSL handshake failed)" in deployment.log_since(mark), address


def test_the_quorum_check_works_over_the_controller_listener(deployment: Deployment) -> None:
    check = subprocess.run(
        [str(deployment.root / "bin/kafka-node-caught-up"), "1", "100", deployment.controller],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_authenticated_user_without_acls_cannot_write_summation(deployment: Deployment) -> None:
    password = uuid.uuid4().hex
    _create_user(deployment, "intruder", password)
    before = _end_offset(deployment, "summation")
    mark = deployment.log_size()
    producer = KafkaProducer(
        bootstrap_servers=deployment.bootstrap,
        max_block_ms=10000,
        acks="all",
        **deployment.client("intruder", password),
    )
    try:
        with pytest.raises((TopicAuthorizationFailedError, KafkaTimeoutError)):
            producer.send("summation", b'{"forged": true}').get(timeout=20)
    finally:
        producer.close(timeout=5)
    assert _end_offset(deployment, "summation") == before
    assert "Principal = User:intruder is Denied operation" in deployment.log_since(mark)


def test_the_services_count_exactly_with_the_role_users_and_acls(deployment: Deployment, tmp_path: Path) -> None:
    security = {
        service: {k: v for k, v in deployment.env_file(service).items() if k.startswith("SUMFLOW_KAFKA_")}
        for service in ("adder", "accumulator")
    }
    for service, env in security.items():
        assert env["SUMFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["SUMFLOW_KAFKA_SASL_USERNAME"] == f"sumflow-{service}"
        assert env["SUMFLOW_KAFKA_BOOTSTRAP"] == deployment.bootstrap
        # what roles/sumflow/tasks/configure.yml installs there: the controller's credential
        Path(env["SUMFLOW_KAFKA_SASL_PASSWORD_FILE"]).write_text(deployment.password(f"sumflow-{service}") + "\n")
        del env["SUMFLOW_KAFKA_BOOTSTRAP"]  # the harness sets the same address
    # a record the accumulator cannot apply: it must be allowed to write it to the DLQ
    admin = KafkaProducer(bootstrap_servers=deployment.bootstrap, acks="all", **deployment.client("admin"))
    try:
        admin.send("summation", b"not an event").get(timeout=30)
    finally:
        admin.close(timeout=5)
    accumulator = AccumulatorProcess.for_broker(
        deployment.bootstrap,
        "summation",
        tmp_path / "accumulator",
        dlq_topic="summation.dlq",
        # the replica's own group, as rendered: the role's PREFIXED group ACL must allow it
        SUMFLOW_CONSUMER_GROUP=deployment.env_file("accumulator")["SUMFLOW_CONSUMER_GROUP"],
        **security["accumulator"],
    )
    adder = AdderProcess.for_broker(deployment.bootstrap, "summation", tmp_path / "adder", **security["adder"])
    mark = deployment.log_size()
    try:
        accumulator.start(timeout=180)
        adder.start(timeout=180)
        expected = 0
        for i in range(CALLS):
            assert adder.add(str(uuid.uuid4()), i, 7).result == i + 7
            expected += i + 7
        assert accumulator.wait_applied(CALLS, timeout=180) == {"total": expected, "applied": CALLS}
    finally:
        adder.close_client()
        for service in (adder, accumulator):
            try:
                service.stop()
            except ServiceError:
                service.kill()
    assert _end_offset(deployment, "summation.dlq", partitions=1) == 1
    assert " is Denied operation" not in deployment.log_since(mark)
    # the replica's position reached its own group (committed at the stop at the latest)
    group = deployment.env_file("accumulator")["SUMFLOW_CONSUMER_GROUP"]
    assert group == f"sumflow-accumulator-{HOST}"
    admin_client = KafkaAdminClient(bootstrap_servers=deployment.bootstrap, **deployment.client("admin"))
    try:
        committed = admin_client.list_group_offsets(group)[group]
    finally:
        admin_client.close()
    assert sum(o.offset for tp, o in committed.items() if tp.topic == "summation") == _end_offset(
        deployment, "summation"
    )


def test_the_molecule_probe_sees_the_same_refusals(deployment: Deployment) -> None:
    """molecule/shared/verify_kafka_security.yml's check, against this broker: it can fail."""
    (deployment.root / "probe-intruder.password").write_text("probe-password-1\n")
    _create_user(deployment, "probe-intruder", "probe-password-1")
    login = [
        f"--ca={deployment.etc_kafka / 'tls/ca.crt'}",
        "--user=admin",
        f"--password-file={deployment.credentials / 'kafka_admin_password'}",
    ]
    probe = [sys.executable, str(REPO / "molecule/default/files/deployment_probe.py")]
    refusals = subprocess.run(
        [
            *probe,
            "kafka-refusals",
            f"--bootstrap={deployment.bootstrap}",
            "--topic=summation",
            *login,
            "--intruder=probe-intruder",
            f"--intruder-password-file={deployment.root / 'probe-intruder.password'}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert refusals.returncode == 0, refusals.stdout + refusals.stderr
    seen = json.loads(refusals.stdout)
    assert seen["plaintext"].startswith("refused") and seen["write_without_acl"].startswith("refused"), seen
    topics = subprocess.run(
        [
            *probe,
            "topics",
            f"--bootstrap={deployment.bootstrap}",
            "--topic=summation=6",
            "--topic=summation.dlq=1",
            *login,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert topics.returncode == 0, topics.stdout + topics.stderr
    # the admin may write: the same probe fails when the "intruder" is allowed to
    allowed = subprocess.run(
        [
            *probe,
            "kafka-refusals",
            f"--bootstrap={deployment.bootstrap}",
            "--topic=summation.dlq",
            *login,
            "--intruder=admin",
            f"--intruder-password-file={deployment.credentials / 'kafka_admin_password'}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert allowed.returncode == 1 and "(no ACLs) wrote an event" in allowed.stderr, allowed.stdout + allowed.stderr


def _create_user(deployment: Deployment, name: str, password: str) -> None:
    """A SCRAM user made with the role's admin tooling, as molecule/shared/verify_kafka_security.yml does."""
    created = deployment.tool(
        "kafka.admin.ConfigCommand",
        "--bootstrap-server",
        deployment.bootstrap,
        "--command-config",
        str(deployment.etc_kafka / "admin-client.properties"),
        "--alter",
        "--entity-type",
        "users",
        "--entity-name",
        name,
        "--add-config",
        f"SCRAM-SHA-512=[password={password}]",
    )
    assert created.returncode == 0, created.stdout + created.stderr


def _end_offset(deployment: Deployment, topic: str, partitions: int | None = None) -> int:
    consumer = KafkaConsumer(bootstrap_servers=deployment.bootstrap, **deployment.client("admin"))
    try:
        count = partitions or len(consumer.partitions_for_topic(topic) or ())
        assert count, f"{topic} has no partitions"
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(count)])
        return sum(ends.values())
    finally:
        consumer.close()


def test_the_opt_out_renders_plaintext_without_secrets(tmp_path: Path) -> None:
    """kafka_security_enabled: false, read by both roles: PLAINTEXT listeners, no login, no password."""
    extra = {**_build(tmp_path, TestPki.create(tmp_path / "pki")), "kafka_security_enabled": False}
    _playbook(tmp_path, "render.yml", extra)
    properties = (tmp_path / "etc-kafka/server.properties").read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{extra['kafka_port']}," in properties
    assert "sasl" not in properties and "authorizer" not in properties
    assert "security.protocol" not in (tmp_path / "etc-kafka/admin-client.properties").read_text()
    for service in ("adder", "accumulator"):
        assert "SUMFLOW_KAFKA_SECURITY_PROTOCOL" not in (tmp_path / f"etc-sumflow/{service}.env").read_text()
