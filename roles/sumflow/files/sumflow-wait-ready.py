"""Wait until sumflow services are ready: the adder's gRPC health SERVING, the accumulator's /readyz 200.

    python sumflow-wait-ready --timeout 90 --adder 127.0.0.1:50051 --accumulator http://127.0.0.1:8080
    python sumflow-wait-ready --adder 127.0.0.1:50051 --ca ca.crt [--cert tls.crt --key tls.key]

Run by the release venv's Python (grpcio and grpc_health are its dependencies). For the adder both the
overall service "" and sumflow.v1.SumService must be SERVING. With --ca the adder is called over TLS,
its certificate checked against that CA (and the name dialled), with --cert/--key as the client
certificate a mutual-TLS adder asks for. Exit status 0 when every target is ready, 1 when one is not
by the timeout (its last answer on stderr), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

SERVICE = "sumflow.v1.SumService"


def adder_channel(target: str, ca: bytes | None, cert: bytes | None, key: bytes | None) -> Any:
    """A plaintext channel, or TLS trusting only `ca` when it is given."""
    import grpc

    if ca is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, credentials)


def adder_status(target: str, tls: tuple[bytes | None, bytes | None, bytes | None] = (None, None, None)) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with adder_channel(target, *tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            except grpc.RpcError as exc:
                return f"health of {service or '(server)'}: {exc.code().name}"
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                return f"health of {service or '(server)'}: {name}"
    return "SERVING"


def accumulator_status(base_url: str) -> str:
    if not base_url.startswith(("http://", "https://")):
        return f"{base_url}: not an http(s) URL"
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/readyz", timeout=2) as response:  # noqa: S310 - http(s) only
            return "SERVING" if response.status == 200 else f"/readyz {response.status}"
    except urllib.error.HTTPError as exc:
        return f"/readyz {exc.code}: {exc.read()[:300].decode(errors='replace')}"
    except OSError as exc:
        return f"/readyz: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sumflow-wait-ready", description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait (default 90)")
    parser.add_argument("--adder", action="append", default=[], metavar="HOST:PORT", help="an adder's gRPC address")
    parser.add_argument("--accumulator", action="append", default=[], metavar="URL", help="an accumulator's base URL")
    parser.add_argument("--ca", type=Path, metavar="FILE", help="PEM CA: call the adders over TLS, trusting only it")
    parser.add_argument("--cert", type=Path, metavar="FILE", help="PEM client certificate (mutual TLS), with --key")
    parser.add_argument("--key", type=Path, metavar="FILE", help="PEM private key of --cert")
    args = parser.parse_args(argv)
    if not args.adder and not args.accumulator:
        parser.error("name at least one --adder or --accumulator")
    if (args.cert is None) != (args.key is None) or (args.cert is not None and args.ca is None):
        parser.error("--cert and --key go together, and with --ca")
    try:
        tls = tuple(None if path is None else path.read_bytes() for path in (args.ca, args.cert, args.key))
    except OSError as exc:
        parser.error(f"cannot read a TLS file: {exc}")
    checks = {f"adder {t}": (partial(adder_status, tls=tls), t) for t in args.adder}
    checks |= {f"accumulator {u}": (accumulator_status, u) for u in args.accumulator}
    status = dict.fromkeys(checks, "not checked yet")
    deadline = time.monotonic() + args.timeout
    while True:
        for name, (check, target) in checks.items():
            if status[name] != "SERVING":
                status[name] = check(target)
        waiting = {name: last for name, last in status.items() if last != "SERVING"}
        if not waiting:
            print(f"ready: {', '.join(sorted(checks))}")
            return 0
        if time.monotonic() >= deadline:
            for name, last in sorted(waiting.items()):
                print(f"sumflow-wait-ready: {name} not ready after {args.timeout:g} s: {last}", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
