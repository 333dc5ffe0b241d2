"""The TLS and SASL settings: validated at load, the password read only from its file, never shown."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from sumflow.adapters.kafka_security import SecretFileError, kafka_client_security
from sumflow.config import ConfigError, GrpcTls, KafkaSecurity, load_accumulator_config, load_adder_config


def _file(path: Path, text: str = "x\n") -> str:
    path.write_text(text)
    return str(path)


def test_defaults_are_plaintext() -> None:
    cfg = load_adder_config({})
    assert cfg.common.kafka_security == KafkaSecurity()
    assert cfg.grpc_tls is None
    assert kafka_client_security(**asdict(cfg.common.kafka_security)) == {}


def test_sasl_ssl_reads_the_password_from_its_file_and_keeps_it_out_of_the_config(tmp_path: Path) -> None:
    env = {
        "SUMFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SUMFLOW_KAFKA_SSL_CAFILE": _file(tmp_path / "ca.pem"),
        "SUMFLOW_KAFKA_SASL_USERNAME": "accumulator",
        "SUMFLOW_KAFKA_SASL_PASSWORD_FILE": _file(tmp_path / "pw", "s3cret-Value\n"),
    }
    cfg = load_accumulator_config(env)
    assert "s3cret-Value" not in repr(cfg)
    assert kafka_client_security(**asdict(cfg.common.kafka_security)) == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "accumulator",
        "sasl_plain_password": "s3cret-Value",
    }


def test_the_password_file_is_read_each_time_client_arguments_are_built(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    security = KafkaSecurity("SASL_SSL", None, "SCRAM-SHA-512", "adder", Path(_file(password, "old\n")))
    assert kafka_client_security(**asdict(security))["sasl_plain_password"] == "old"
    password.write_text("new\n")
    assert kafka_client_security(**asdict(security))["sasl_plain_password"] == "new"


def test_an_empty_password_file_is_refused_with_the_variable_named(tmp_path: Path) -> None:
    empty = _file(tmp_path / "pw", "\n")
    env = {
        "SUMFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SUMFLOW_KAFKA_SASL_USERNAME": "adder",
        "SUMFLOW_KAFKA_SASL_PASSWORD_FILE": empty,
    }
    with pytest.raises(ConfigError, match="SUMFLOW_KAFKA_SASL_PASSWORD_FILE"):
        load_adder_config(env)
    # emptied after the configuration was loaded: refused when the clients are built
    security = KafkaSecurity("SASL_SSL", None, "SCRAM-SHA-512", "adder", Path(empty))
    with pytest.raises(SecretFileError, match="SUMFLOW_KAFKA_SASL_PASSWORD_FILE"):
        kafka_client_security(**asdict(security))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SUMFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SUMFLOW_KAFKA_SASL_USERNAME"),
        ({"SUMFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "SUMFLOW_KAFKA_SECURITY_PROTOCOL"),
        ({"SUMFLOW_KAFKA_SASL_USERNAME": "adder"}, "SUMFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        ({"SUMFLOW_KAFKA_SECURITY_PROTOCOL": "SSL"}, "SUMFLOW_KAFKA_SECURITY_PROTOCOL"),
        ({"SUMFLOW_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "SUMFLOW_KAFKA_SSL_CAFILE"),
        ({"SUMFLOW_KAFKA_SASL_MECHANISM": "PLAIN"}, "SUMFLOW_KAFKA_SASL_MECHANISM"),
    ],
)
def test_incomplete_or_wrong_kafka_security_is_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_adder_config(env)


def test_grpc_tls_settings(tmp_path: Path) -> None:
    cert, key, ca = (_file(tmp_path / name) for name in ("cert.pem", "key.pem", "ca.pem"))
    assert load_adder_config({"SUMFLOW_GRPC_TLS_CERT": cert, "SUMFLOW_GRPC_TLS_KEY": key}).grpc_tls == GrpcTls(
        Path(cert), Path(key), None
    )
    mtls = {"SUMFLOW_GRPC_TLS_CERT": cert, "SUMFLOW_GRPC_TLS_KEY": key, "SUMFLOW_GRPC_TLS_CLIENT_CA": ca}
    assert load_adder_config(mtls).grpc_tls == GrpcTls(Path(cert), Path(key), Path(ca))
    with pytest.raises(ConfigError, match="go together"):
        load_adder_config({"SUMFLOW_GRPC_TLS_CERT": cert})
    with pytest.raises(ConfigError, match="SUMFLOW_GRPC_TLS_CLIENT_CA needs"):
        load_adder_config({"SUMFLOW_GRPC_TLS_CLIENT_CA": ca})
