"""Wait until sumflow services are ready: the adder's gRPC health SERVING, the accumulator's /readyz 200.

    python sumflow-wait-ready --timeout 90 --adder 127.0.0.1:50051 --accumulator http://127.0.0.1:8080

Run by the release venv's Python (grpcio and grpc_health are its dependencies). For the adder both the
overall service "" and sumflow.v1.SumService must be SERVING. Exit status 0 when every target is ready,
1 when one is not by the timeout (its last answer on stderr), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

SERVICE = "sumflow.v1.SumService"


def adder_status(target: str) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
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
    args = parser.parse_args(argv)
    if not args.adder and not args.accumulator:
        parser.error("name at least one --adder or --accumulator")
    checks = {f"adder {t}": (adder_status, t) for t in args.adder}
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
