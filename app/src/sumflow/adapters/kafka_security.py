"""The kafka-python keyword arguments that make a client connect over SASL_SSL (or PLAINTEXT).

Every producer and consumer of both services takes `**client_security` built here by the bootstrap
from the configuration (config.KafkaSecurity). The SASL password is read from its file here, when
the bootstrap builds the arguments, and only handed to kafka-python: it is never logged or put in
argv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SecretFileError(ValueError):
    """A secret file cannot be read or is empty; the message names the setting."""


def read_secret_file(path: Path, name: str) -> str:
    """The first line of a secret file, without its line end."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise SecretFileError(f"{name}: cannot read {path} ({exc.strerror})") from None
    if not secret:
        raise SecretFileError(f"{name}: {path} is empty")
    return secret


def kafka_client_security(
    protocol: str,
    *,
    ca_file: Path | None = None,
    sasl_mechanism: str = "SCRAM-SHA-512",
    sasl_username: str | None = None,
    sasl_password_file: Path | None = None,
) -> dict[str, Any]:
    """{} for PLAINTEXT; for SASL_SSL, TLS (certificate and host name checked) and the SCRAM login."""
    if protocol == "PLAINTEXT":
        return {}
    if protocol != "SASL_SSL" or sasl_username is None or sasl_password_file is None:
        raise ValueError("SASL_SSL with a user name and a password file, or PLAINTEXT")
    kwargs: dict[str, Any] = {
        "security_protocol": protocol,
        "ssl_check_hostname": True,
        "sasl_mechanism": sasl_mechanism,
        "sasl_plain_username": sasl_username,
        "sasl_plain_password": read_secret_file(sasl_password_file, "SUMFLOW_KAFKA_SASL_PASSWORD_FILE"),
    }
    if ca_file is not None:
        kwargs["ssl_cafile"] = str(ca_file)
    return kwargs


__all__ = ["SecretFileError", "kafka_client_security", "read_secret_file"]
