"""A single KRaft node with TLS, SASL/SCRAM-SHA-512 and the StandardAuthorizer, for tests.

    pki = TestPki.create(tmp_path / "pki")
    broker = SecureKafkaBroker(tmp_path / "kafka", pki, users=("adder", "accumulator", "nobody"))
    broker.start()                       # formatted with every user's SCRAM credentials, then ready
    broker.create_topic("summation")     # as the admin (the only super user)
    broker.grant(sumflow_acls("adder", "accumulator", "summation", "summation.dlq", "g-"))
    broker.client_config("adder")        # kafka-python kwargs: SASL_SSL, SCRAM-SHA-512, the CA
    broker.password_file("adder")        # the 0600 file SUMFLOW_KAFKA_SASL_PASSWORD_FILE points at

The client listener is SASL_SSL (server certificate only, hostname checked). The controller listener
stays on loopback as SASL_PLAINTEXT with the PLAIN mechanism and the admin user, because KRaft cannot
use SCRAM before the metadata (where SCRAM credentials live) is loaded; on hosts it would be TLS too.
`allow.everyone.if.no.acl.found=false`: a principal without an ACL is refused everything.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.kafka import KafkaCluster, KafkaHarnessError, create_topics
from harness.pki import TestPki
from harness.ports import free_port

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def secure_listener_properties(
    port: int, controller_port: int, keystore: Path, truststore: Path, admin_password: str
) -> dict[str, str]:
    """The server.properties lines that turn the harness's node into a SASL_SSL + ACL broker."""
    scram = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{admin_password}" user_{ADMIN}="{admin_password}";'
    )
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": scram,
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(truststore),
        "ssl.client.auth": "none",
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
        "auto.create.topics.enable": "false",
    }


def sumflow_acls(adder: str, accumulator: str, topic: str, dlq_topic: str, group_prefix: str) -> list[Any]:
    """Least privilege, as roles/kafka's kafka_acls: the adder writes `topic`; the accumulator reads it,
    uses every group whose name starts with `group_prefix` (one per replica), writes the DLQ."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    def allow(user: str, operation: Any, kind: Any, name: str, pattern: Any = ACLResourcePatternType.LITERAL) -> Any:
        return ACL(f"User:{user}", "*", operation, ACLPermissionType.ALLOW, ResourcePattern(kind, name, pattern))

    return [
        allow(adder, ACLOperation.WRITE, ResourceType.TOPIC, topic),
        allow(adder, ACLOperation.DESCRIBE, ResourceType.TOPIC, topic),
        allow(adder, ACLOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, "kafka-cluster"),
        allow(accumulator, ACLOperation.READ, ResourceType.TOPIC, topic),
        allow(accumulator, ACLOperation.DESCRIBE, ResourceType.TOPIC, topic),
        allow(accumulator, ACLOperation.READ, ResourceType.GROUP, group_prefix, ACLResourcePatternType.PREFIXED),
        allow(accumulator, ACLOperation.WRITE, ResourceType.TOPIC, dlq_topic),
        allow(accumulator, ACLOperation.DESCRIBE, ResourceType.TOPIC, dlq_topic),
    ]


class SecureKafkaBroker:
    """One combined KRaft node: SASL_SSL clients, SCRAM users made at format time, ACLs enforced."""

    def __init__(self, data_dir: Path, pki: TestPki, users: Iterable[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.pki = pki
        self.secrets_dir = self.data_dir / "secrets"
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        self.passwords = {name: secrets.token_urlsafe(24) for name in (ADMIN, *users)}
        for name, password in self.passwords.items():
            fd = os.open(self.password_file(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(password + "\n")
        server = pki.issue("kafka-broker", server=True, client=True)
        self.port, controller_port = free_port(), free_port()
        scram_users = [f"{MECHANISM}=[name={name},password={password}]" for name, password in self.passwords.items()]
        self._cluster = KafkaCluster(
            self.data_dir,
            nodes=1,
            ports=[self.port],
            controller_ports=[controller_port],
            extra_properties=secure_listener_properties(
                self.port, controller_port, server.chain, pki.ca_cert, self.passwords[ADMIN]
            ),
            format_args=[arg for user in scram_users for arg in ("--add-scram", user)],
            client_config=self.client_config(ADMIN),
        )

    @property
    def bootstrap(self) -> str:
        return self._cluster.bootstrap

    @property
    def node(self) -> Any:
        return self._cluster.nodes[0]

    def password_file(self, user: str) -> Path:
        return self.secrets_dir / f"{user}.password"

    def client_config(self, user: str) -> dict[str, Any]:
        """kafka-python keyword arguments for `user` over SASL_SSL, verifying the broker with the CA."""
        return {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(self.pki.ca_cert),
            "ssl_check_hostname": True,
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user],
        }

    def service_env(self, user: str) -> dict[str, str]:
        """The SUMFLOW_KAFKA_* settings a service runs with as `user` (the password stays in its file)."""
        return {
            "SUMFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SUMFLOW_KAFKA_SSL_CAFILE": str(self.pki.ca_cert),
            "SUMFLOW_KAFKA_SASL_MECHANISM": MECHANISM,
            "SUMFLOW_KAFKA_SASL_USERNAME": user,
            "SUMFLOW_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
        }

    def start(self, timeout: float = 180.0) -> None:
        self._cluster.start(timeout)

    def stop(self) -> None:
        self._cluster.stop()

    def create_topic(self, name: str, partitions: int = 1) -> str:
        create_topics(self.bootstrap, [name], partitions, 1, client_config=self.client_config(ADMIN))
        return name

    def grant(self, acls: list[Any]) -> None:
        """Create ACLs as the admin; raises if the broker refused any."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client_config(ADMIN))
        try:
            result = admin.create_acls(acls)
        finally:
            admin.close()
        if result["failed"]:
            raise KafkaHarnessError(f"ACLs refused: {result['failed']}")

    def log_size(self) -> int:
        return self.node.log_size()

    def log_since(self, offset: int) -> str:
        return self.node.log_since(offset)

    def log_tail(self, lines: int = 60) -> str:
        return self.node.log_tail(lines)

    def __enter__(self) -> SecureKafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ADMIN", "SecureKafkaBroker", "secure_listener_properties", "sumflow_acls"]
