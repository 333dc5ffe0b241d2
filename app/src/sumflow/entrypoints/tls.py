"""Server-side TLS credentials of the adder's gRPC port, from the files GrpcTls names.

With a client CA, the server requires a client certificate signed by it (mutual TLS); without one,
any client that trusts the server's CA may connect. The files are read once, at start: a rotated
certificate takes effect on the next (rolling) restart.
"""

from __future__ import annotations

import grpc

from sumflow.config import ConfigError, GrpcTls


def _read(path: object, name: str) -> bytes:
    try:
        with open(str(path), "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path} ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{name}: {path} is not a PEM file")
    return data


def grpc_server_credentials(tls: GrpcTls | None) -> grpc.ServerCredentials | None:
    """None (plaintext) without TLS settings; TLS, or mutual TLS with a client CA, otherwise."""
    if tls is None:
        return None
    key = _read(tls.key, "SUMFLOW_GRPC_TLS_KEY")
    chain = _read(tls.cert, "SUMFLOW_GRPC_TLS_CERT")
    client_ca = None if tls.client_ca is None else _read(tls.client_ca, "SUMFLOW_GRPC_TLS_CLIENT_CA")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


__all__ = ["grpc_server_credentials"]
