"""Where the `sumflow` command finds the services, and how it talks to them (plaintext or TLS).

gRPC: `--adder HOST:PORT`; TLS when `--tls` or `--ca` is given (grpc.ssl_channel_credentials, with
`--cert/--key` as a client certificate). REST: `--accumulator URL` and `--adder-metrics URL`; an
https:// URL verifies the server against `--ca` (or the system roots) and presents `--cert/--key`.
Behind the deployment's HAProxy both services' metrics need basic auth: `--metrics-user` and
`--metrics-password-file` (the file's first line) are sent with the requests for metrics, over https
only. Every option has an environment variable so a shell profile can point the command elsewhere.
"""

from __future__ import annotations

import argparse
import base64
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

# option -> (environment variable, default, metavar, help)
ENDPOINT_OPTIONS: dict[str, tuple[str, str | None, str, str]] = {
    "adder": ("SUMFLOW_ADDER_TARGET", "127.0.0.1:50051", "HOST:PORT", "the adder's gRPC address"),
    "adder_metrics": ("SUMFLOW_ADDER_METRICS_URL", "http://127.0.0.1:9464", "URL", "the adder's metrics base URL"),
    "accumulator": ("SUMFLOW_ACCUMULATOR_URL", "http://127.0.0.1:8080", "URL", "the accumulator's base URL"),
    "ca": ("SUMFLOW_TLS_CA", None, "FILE", "PEM CA bundle to verify the servers (turns on TLS for gRPC)"),
    "cert": ("SUMFLOW_TLS_CERT", None, "FILE", "PEM client certificate (mutual TLS)"),
    "key": ("SUMFLOW_TLS_KEY", None, "FILE", "PEM private key of --cert"),
    "metrics_user": ("SUMFLOW_METRICS_USER", None, "NAME", "basic-auth user for the services' metrics (https only)"),
    "metrics_password_file": (
        "SUMFLOW_METRICS_PASSWORD_FILE",
        None,
        "FILE",
        "file whose first line is --metrics-user's password",
    ),
}


class CliError(Exception):
    """A failure the command explains in one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_endpoint_options(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    group = parser.add_argument_group("endpoints (each also read from the environment variable shown)")
    for dest, (env_name, default, metavar, what) in ENDPOINT_OPTIONS.items():
        shown = f" (default {default})" if default else ""
        group.add_argument(
            f"--{dest.replace('_', '-')}",
            dest=dest,
            default=environ.get(env_name) or default,
            metavar=metavar,
            help=f"{what}; ${env_name}{shown}",
        )
    group.add_argument("--tls", action="store_true", help="TLS for gRPC with the system's CA roots")
    group.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="deadline of each call (default 10)"
    )


@dataclass(frozen=True)
class Endpoints:
    adder: str
    adder_metrics: str
    accumulator: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    tls: bool = False
    timeout: float = 10.0
    metrics_user: str | None = None
    metrics_password_file: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Endpoints:
        if bool(args.cert) != bool(args.key):
            raise CliError("--cert and --key go together", exit_code=2)
        if bool(args.metrics_user) != bool(args.metrics_password_file):
            raise CliError("--metrics-user and --metrics-password-file go together", exit_code=2)
        for option, url in (("--accumulator", args.accumulator), ("--adder-metrics", args.adder_metrics)):
            if not url.startswith(("http://", "https://")):
                raise CliError(f"{option} {url!r}: expected an http:// or https:// URL", exit_code=2)
        return cls(
            adder=args.adder,
            adder_metrics=args.adder_metrics.rstrip("/"),
            accumulator=args.accumulator.rstrip("/"),
            ca=Path(args.ca) if args.ca else None,
            cert=Path(args.cert) if args.cert else None,
            key=Path(args.key) if args.key else None,
            tls=bool(args.tls or args.ca),
            timeout=args.timeout,
            metrics_user=args.metrics_user or None,
            metrics_password_file=Path(args.metrics_password_file) if args.metrics_password_file else None,
        )

    # -- gRPC ----------------------------------------------------------------------------------
    def grpc_credentials(self) -> grpc.ChannelCredentials | None:
        """None for a plaintext channel; TLS credentials from --ca/--cert/--key otherwise."""
        if not self.tls:
            return None
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca),
            private_key=_read(self.key),
            certificate_chain=_read(self.cert),
        )

    def grpc_channel(self) -> grpc.Channel:
        import grpc

        options = [("grpc.enable_retries", 0)]
        credentials = self.grpc_credentials()
        if credentials is None:
            return grpc.insecure_channel(self.adder, options=options)
        return grpc.secure_channel(self.adder, credentials, options=options)

    # -- HTTP ----------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert and self.key:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def metrics_authorization(self, url: str) -> dict[str, str]:
        """The basic-auth header for a metrics request to `url`: none without --metrics-user, nor over
        plaintext http (the password never leaves unencrypted)."""
        if self.metrics_user is None or not url.startswith("https://"):
            return {}
        lines = (_read(self.metrics_password_file) or b"").decode("utf-8", "replace").splitlines()
        password = lines[0].strip() if lines else ""
        token = base64.b64encode(f"{self.metrics_user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def http_get(self, url: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of a GET; an HTTP error status is returned, not raised; CliError if unreachable."""
        context = self.ssl_context() if url.startswith("https://") else None
        # The scheme is http or https: from_args refuses any other base URL.
        request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach {url}: {reason}", exit_code=UNREACHABLE_EXIT) from None


# The exit status of an unreachable service, the same as gRPC UNAVAILABLE (10 + 14).
UNREACHABLE_EXIT = 24


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", exit_code=2) from None
