"""Checks the Molecule verify step runs FROM THE CONTROLLER against the deployed hosts' addresses.

    deployment_probe.py flow --adder HOST:PORT --accumulator http://HOST:PORT [--timeout S]
        One AddNumbers call over gRPC must raise GET /api/total by exactly first + second, once:
        the total reaches the expected value, a retry with the same request_id is answered as a
        duplicate with the same result, and the total does not move again.
    deployment_probe.py topics --bootstrap HOST:PORT --topic NAME=PARTITIONS ...
        Every topic exists with exactly that many partitions, each with a leader.
    deployment_probe.py targets --prometheus http://HOST:PORT --expect N [--timeout S]
        Prometheus has at least N active scrape targets, every one of them up.

Runs with the controller's Python (the repo venv: grpcio, kafka-python and the sumflow stubs).
Prints one JSON line with what it saw; exits non-zero with the reason on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.request
import uuid
from typing import Any

import grpc

from sumflow.v1 import sum_pb2, sum_pb2_grpc


class ProbeError(Exception):
    """The deployment does not behave as required."""


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own http:// URL)
        return json.loads(response.read())


def _read_total(accumulator: str, deadline: float) -> dict[str, Any]:
    """GET /api/total, retrying until the accumulator answers (it may still be starting)."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return _get_json(f"{accumulator}/api/total", timeout=5)
        except OSError as exc:
            last_error = exc
            time.sleep(1)
    raise ProbeError(f"{accumulator}/api/total never answered: {last_error}")


def _add(stub: sum_pb2_grpc.SumServiceStub, request: sum_pb2.AddNumbersRequest, deadline: float) -> Any:
    """AddNumbers with retries on UNAVAILABLE (the adder may still be connecting to Kafka)."""
    while True:
        try:
            return stub.AddNumbers(request, timeout=10, wait_for_ready=True)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ProbeError(f"AddNumbers failed: {exc.code().name} {exc.details()}") from exc
            if time.monotonic() > deadline:
                raise ProbeError(f"AddNumbers still {exc.code().name} at the deadline: {exc.details()}") from exc
            time.sleep(1)


def _wait_total(accumulator: str, expected: int, deadline: float) -> dict[str, Any]:
    seen = _read_total(accumulator, deadline)
    while seen["total"] != expected:
        if seen["total"] > expected:
            raise ProbeError(f"total overshot: {seen} (expected {expected})")
        if time.monotonic() > deadline:
            raise ProbeError(f"total is {seen['total']}, expected {expected} at the deadline")
        time.sleep(0.5)
        seen = _read_total(accumulator, deadline)
    return seen


def probe_flow(adder: str, accumulator: str, timeout: float, settle: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    before = _read_total(accumulator, deadline)
    first, second = random.randint(1, 10**6), random.randint(1, 10**6)  # noqa: S311 (not crypto)
    request = sum_pb2.AddNumbersRequest(request_id=str(uuid.uuid4()), first_number=first, second_number=second)
    with grpc.insecure_channel(adder) as channel:
        stub = sum_pb2_grpc.SumServiceStub(channel)
        reply = _add(stub, request, deadline)
        if reply.result != first + second or reply.request_id != request.request_id:
            raise ProbeError(f"wrong reply {reply} for {first} + {second}")
        expected = before["total"] + first + second
        after = _wait_total(accumulator, expected, deadline)
        retry = _add(stub, request, deadline)
        if not retry.duplicate or retry.result != reply.result:
            raise ProbeError(f"a retry of the same request_id was not a duplicate: {retry}")
    time.sleep(settle)
    final = _read_total(accumulator, deadline)
    if final["total"] != expected:
        raise ProbeError(f"total moved after the duplicate: {final} (expected {expected})")
    return {"before": before, "added": [first, second], "after": after, "final": final}


def probe_topics(bootstrap: str, expected: dict[str, int], timeout: float) -> dict[str, Any]:
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        while True:
            # Metadata response dicts: {"name", "error_code", "partitions": [{"leader_id", ...}]}
            described = {t["name"]: t for t in admin.describe_topics(sorted(expected))}
            found = {
                name: len(t.get("partitions", []))
                for name, t in described.items()
                if t.get("error_code", 0) == 0 and all(p.get("leader_id", -1) >= 0 for p in t.get("partitions", []))
            }
            if found == expected:
                return {"topics": found}
            if time.monotonic() > deadline:
                raise ProbeError(f"topics {found} (partitions with a leader), expected {expected}")
            time.sleep(1)
    finally:
        admin.close()


def probe_targets(prometheus: str, expect: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            active = _get_json(f"{prometheus}/api/v1/targets?state=active", timeout=5)["data"]["activeTargets"]
        except OSError as exc:
            active, error = [], str(exc)
        else:
            error = ""
        health = {t["scrapeUrl"]: t["health"] for t in active}
        down = {url: h for url, h in health.items() if h != "up"}
        if len(health) >= expect and not down:
            return {"targets_up": sorted(health)}
        if time.monotonic() > deadline:
            raise ProbeError(f"{len(health)} targets (expected at least {expect}), not up: {down} {error}")
        time.sleep(2)


def _topic_spec(text: str) -> tuple[str, int]:
    name, _, partitions = text.partition("=")
    if not name or not partitions.isdigit():
        raise argparse.ArgumentTypeError(f"want NAME=PARTITIONS, got {text!r}")
    return name, int(partitions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    flow = commands.add_parser("flow")
    flow.add_argument("--adder", required=True, help="HOST:PORT of the adder's gRPC server")
    flow.add_argument("--accumulator", required=True, help="base URL of the accumulator")
    flow.add_argument("--timeout", type=float, default=120.0)
    flow.add_argument("--settle", type=float, default=3.0, help="seconds to watch the total after the retry")
    topics = commands.add_parser("topics")
    topics.add_argument("--bootstrap", required=True)
    topics.add_argument("--topic", type=_topic_spec, action="append", required=True)
    topics.add_argument("--timeout", type=float, default=60.0)
    targets = commands.add_parser("targets")
    targets.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    targets.add_argument("--expect", type=int, required=True, help="fewest active targets")
    targets.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "flow":
            result = probe_flow(args.adder, args.accumulator, args.timeout, args.settle)
        elif args.command == "targets":
            result = probe_targets(args.prometheus, args.expect, args.timeout)
        else:
            result = probe_topics(args.bootstrap, dict(args.topic), args.timeout)
    except ProbeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
