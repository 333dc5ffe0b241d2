"""Checks the Molecule verify step runs FROM THE CONTROLLER against the deployed hosts' addresses.

    deployment_probe.py flow --adder HOST:PORT --accumulator https://HOST:PORT [TLS] [--timeout S]
        One AddNumbers call over gRPC must raise GET /api/total by exactly first + second, once:
        the total reaches the expected value, a retry with the same request_id is answered as a
        duplicate with the same result, and the total does not move again.
    deployment_probe.py refused --adder HOST:PORT [TLS]
        The adder refuses this client: AddNumbers over plaintext (no --ca) or with the given TLS
        settings ends in UNAVAILABLE (the TLS handshake failed), not in an answer.
    deployment_probe.py stream --adder HOST:PORT --accumulator https://HOST:PORT [--accumulator ...]
                               --until-file F [--rate N] [--retry STATUS ...] [TLS]
        AddNumbers calls one after another (or N per second on a fixed schedule) until file F exists
        (at most --max-seconds), each retried with its request_id on UNAVAILABLE, DEADLINE_EXCEEDED or
        CANCELLED (or only the --retry statuses), as a client riding out a rolling restart does
        (docs/operations.md: a call that reaches the adder in the instant it stops can end
        CANCELLED); any other status fails. Then every accumulator's total must have risen by exactly
        the sum of the answered calls. Prints the retries by status.
    deployment_probe.py served-cert --adder HOST:PORT --ca FILE --expect-cert FILE
        The certificate the adder presents in a TLS handshake (checked against the CA and the
        address) is exactly the one in FILE: it serves the certificate that was issued last.
    TLS: --ca FILE (verify the adder, and an https accumulator, against this CA) [--cert FILE --key FILE]
        (client certificate)
    deployment_probe.py topics --bootstrap HOST:PORT --topic NAME=PARTITIONS ... [KAFKA LOGIN]
        Every topic exists with exactly that many partitions, each with a leader.
    deployment_probe.py kafka-refusals --bootstrap HOST:PORT --topic NAME KAFKA LOGIN
                                       --intruder USER --intruder-password-file FILE
        A plaintext client is refused; USER (authenticated, without ACLs) cannot write a well-formed
        event to NAME; the topic's end offsets, read with the login, did not move.
KAFKA LOGIN: --ca FILE --user NAME --password-file FILE (SASL_SSL with SCRAM-SHA-512, the host name
checked against the broker's certificate); without it, PLAINTEXT.
    deployment_probe.py targets --prometheus URL --expect N [--timeout S] [PROMETHEUS LOGIN]
        Prometheus has at least N active scrape targets, every one of them up.
PROMETHEUS LOGIN: --ca FILE --user NAME --password-file FILE (https checked against the CA, HTTP basic
auth); without it, plain http and no authentication.

Runs with the controller's Python (the repo venv: grpcio, kafka-python and the sumflow stubs).
Prints one JSON line with what it saw; exits non-zero with the reason on any mismatch.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import socket
import ssl
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, SaslAuthenticationFailedError, TopicAuthorizationFailedError

from sumflow.adapters.kafka_security import kafka_client_security
from sumflow.domain.events import encode_event
from sumflow.domain.summation import AddCommand
from sumflow.v1 import sum_pb2, sum_pb2_grpc

# (CA, client certificate, client key); no CA: plaintext.
Tls = tuple[Path | None, Path | None, Path | None]


# What a client retries with the same request_id: the adder restarting, Kafka slow, or a call that
# reached a stopping adder before a handler took it (gRPC core ends those CANCELLED).
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


class ProbeError(Exception):
    """The deployment does not behave as required."""


def _get_json(url: str, timeout: float, login: dict[str, Any] | None = None, ca: Path | None = None) -> dict[str, Any]:
    """GET url as JSON; an https URL is checked against `ca`; with `login` ({"ca", "user", "password"})
    over https checked against its CA, with HTTP basic auth."""
    request = urllib.request.Request(url)  # noqa: S310 (our own URL)
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None and url.startswith("https:") else None
    if login:
        token = base64.b64encode(f"{login['user']}:{login['password']}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=login["ca"])
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 (our own URL)
        return json.loads(response.read())


def _read_total(accumulator: str, deadline: float, ca: Path | None) -> dict[str, Any]:
    """GET /api/total (https: checked against the CA), retrying until the accumulator answers (it may
    still be starting)."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return _get_json(f"{accumulator}/api/total", timeout=5, ca=ca)
        except OSError as exc:
            last_error = exc
            time.sleep(1)
    raise ProbeError(f"{accumulator}/api/total never answered: {last_error}")


def _channel(adder: str, ca: Path | None, cert: Path | None, key: Path | None) -> grpc.Channel:
    """Plaintext without a CA; otherwise TLS trusting only that CA, with an optional client certificate."""
    if ca is None:
        return grpc.insecure_channel(adder)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    return grpc.secure_channel(adder, credentials)


def _add(
    stub: sum_pb2_grpc.SumServiceStub,
    request: sum_pb2.AddNumbersRequest,
    deadline: float,
    pause: float = 1.0,
    *,
    retried: frozenset[grpc.StatusCode] = RETRIED,
    seen: Counter[str] | None = None,
) -> tuple[Any, int]:
    """(reply, retries): AddNumbers retried with the same request on a `retried` status (the adder may
    still be connecting to Kafka, or restarting); any other status fails the probe. Each retried
    status is counted by name in `seen`."""
    retries = 0
    while True:
        try:
            return stub.AddNumbers(request, timeout=10, wait_for_ready=True), retries
        except grpc.RpcError as exc:
            if exc.code() not in retried:
                raise ProbeError(f"AddNumbers failed: {exc.code().name} {exc.details()}") from exc
            if time.monotonic() > deadline:
                raise ProbeError(f"AddNumbers still {exc.code().name} at the deadline: {exc.details()}") from exc
            if seen is not None:
                seen[exc.code().name] += 1
            retries += 1
            time.sleep(pause)


def _wait_total(accumulator: str, expected: int, deadline: float, ca: Path | None) -> dict[str, Any]:
    seen = _read_total(accumulator, deadline, ca)
    while seen["total"] != expected:
        if seen["total"] > expected:
            raise ProbeError(f"total overshot: {seen} (expected {expected})")
        if time.monotonic() > deadline:
            raise ProbeError(f"total is {seen['total']}, expected {expected} at the deadline")
        time.sleep(0.5)
        seen = _read_total(accumulator, deadline, ca)
    return seen


def _request() -> sum_pb2.AddNumbersRequest:
    first, second = random.randint(1, 10**6), random.randint(1, 10**6)  # noqa: S311 (not crypto)
    return sum_pb2.AddNumbersRequest(request_id=str(uuid.uuid4()), first_number=first, second_number=second)


def probe_flow(adder: str, accumulator: str, tls: Tls, timeout: float, settle: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    before = _read_total(accumulator, deadline, tls[0])
    request = _request()
    first, second = request.first_number, request.second_number
    with _channel(adder, *tls) as channel:
        stub = sum_pb2_grpc.SumServiceStub(channel)
        reply, _ = _add(stub, request, deadline)
        if reply.result != first + second or reply.request_id != request.request_id:
            raise ProbeError(f"wrong reply {reply} for {first} + {second}")
        expected = before["total"] + first + second
        after = _wait_total(accumulator, expected, deadline, tls[0])
        retry, _ = _add(stub, request, deadline)
        if not retry.duplicate or retry.result != reply.result:
            raise ProbeError(f"a retry of the same request_id was not a duplicate: {retry}")
    time.sleep(settle)
    final = _read_total(accumulator, deadline, tls[0])
    if final["total"] != expected:
        raise ProbeError(f"total moved after the duplicate: {final} (expected {expected})")
    return {"before": before, "added": [first, second], "after": after, "final": final, "tls": tls[0] is not None}


def probe_refused(adder: str, tls: Tls) -> dict[str, Any]:
    """One call without waiting for the channel: a refused handshake is UNAVAILABLE at once."""
    with _channel(adder, *tls) as channel:
        try:
            reply = sum_pb2_grpc.SumServiceStub(channel).AddNumbers(_request(), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise ProbeError(f"expected UNAVAILABLE (refused), got {exc.code().name}: {exc.details()}") from exc
            return {"refused": exc.code().name, "details": exc.details(), "tls": tls[0] is not None}
    raise ProbeError(f"the adder answered a client it must refuse: {reply}")


def probe_served_cert(adder: str, ca: Path, expect: Path) -> dict[str, Any]:
    host, _, port = adder.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        served = tls.getpeercert(binary_form=True)
    wanted = ssl.PEM_cert_to_DER_cert(expect.read_text())
    if served != wanted:
        raise ProbeError(
            f"{adder} serves the certificate sha256 {hashlib.sha256(served or b'').hexdigest()}, "
            f"not {expect} (sha256 {hashlib.sha256(wanted).hexdigest()})"
        )
    return {"served_sha256": hashlib.sha256(served).hexdigest(), "file": str(expect)}


def probe_stream(
    adder: str,
    accumulators: list[str],
    tls: Tls,
    *,
    until_file: Path,
    max_seconds: float,
    timeout: float,
    rate: float | None = None,
    retried: frozenset[grpc.StatusCode] = RETRIED,
) -> dict[str, Any]:
    """Calls until until_file exists, one after another or at most `rate` per second (a fixed
    schedule; a call that ends late delays the next instead of bunching the ones after it); every call
    answered (after retries of a `retried` status) and counted exactly once by every accumulator."""
    stop_at = time.monotonic() + max_seconds
    before = {url: _read_total(url, time.monotonic() + timeout, tls[0]) for url in accumulators}
    calls = retried_calls = retries = duplicates = 0
    added = 0
    slowest = 0.0
    retried_by_code: Counter[str] = Counter()
    began = next_at = time.monotonic()
    with _channel(adder, *tls) as channel:
        stub = sum_pb2_grpc.SumServiceStub(channel)
        while not until_file.exists():
            if time.monotonic() > stop_at:
                raise ProbeError(f"{until_file} did not appear within {max_seconds:g} s")
            if rate:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + 1 / rate, time.monotonic())
            request = _request()
            started = time.monotonic()
            reply, tries = _add(stub, request, started + timeout, pause=0.2, retried=retried, seen=retried_by_code)
            slowest = max(slowest, time.monotonic() - started)
            # A retried call may be answered as a duplicate: its first attempt was applied before the
            # adder closed the connection. The first attempt of a call never is.
            if reply.result != request.first_number + request.second_number or (reply.duplicate and not tries):
                raise ProbeError(f"wrong reply {reply} for {request}")
            calls += 1
            added += reply.result
            retried_calls += tries > 0
            retries += tries
            duplicates += reply.duplicate
    seconds = time.monotonic() - began
    after = {
        url: _wait_total(url, seen["total"] + added, time.monotonic() + timeout, tls[0]) for url, seen in before.items()
    }
    return {
        "calls": calls,
        "seconds": round(seconds, 1),
        "calls_per_s": round(calls / seconds, 1) if seconds else 0.0,
        "calls_retried": retried_calls,
        "retries": retries,
        "retries_by_status": dict(retried_by_code),
        "answered_as_duplicate_after_a_retry": duplicates,
        "slowest_call_s": round(slowest, 2),
        "added": added,
        "totals": {url: {"before": before[url]["total"], "after": after[url]["total"]} for url in accumulators},
    }


def _login(ca: str | None, user: str | None, password_file: str | None) -> dict[str, Any]:
    """kafka-python keyword arguments: SASL_SSL as `user` when a CA is given, else PLAINTEXT."""
    if ca is None:
        return {}
    return kafka_client_security(
        "SASL_SSL", ca_file=Path(ca), sasl_username=user, sasl_password_file=Path(password_file or "")
    )


def _end_offsets(bootstrap: str, topic: str, login: dict[str, Any]) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **login)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ProbeError(f"{topic}: no partitions visible to the login")
        return sum(consumer.end_offsets([TopicPartition(topic, p) for p in partitions]).values())
    finally:
        consumer.close()


def _login_when_known(bootstrap: str, login: dict[str, Any], timeout: float = 60.0) -> KafkaProducer:
    """A producer logged in as a user just created: brokers learn SCRAM credentials from the metadata
    log a moment after the admin call returns, so a refused login is retried until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", max_block_ms=10_000, bootstrap_timeout_ms=10_000, **login
            )
        except (SaslAuthenticationFailedError, KafkaTimeoutError):
            if time.monotonic() > deadline:
                raise ProbeError(f"{login['sasl_plain_username']} could not log in to {bootstrap}") from None
            time.sleep(1)


def probe_kafka_refusals(bootstrap: str, topic: str, login: dict[str, Any], intruder: dict[str, Any]) -> dict[str, Any]:
    before = _end_offsets(bootstrap, topic, login)
    try:
        KafkaProducer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=5000, request_timeout_ms=3000).close()
    except KafkaError as exc:
        plaintext = f"refused: {exc!r}"
    else:
        raise ProbeError(f"a PLAINTEXT client connected to {bootstrap}")
    # the constructor connects and authenticates: past it, the login worked and only ACLs can refuse
    producer = _login_when_known(bootstrap, intruder)
    forged = AddCommand(str(uuid.uuid4()), 10**12, 1)
    try:
        producer.send(topic, encode_event(forged, int(time.time() * 1000))).get(timeout=20)
    except (TopicAuthorizationFailedError, KafkaTimeoutError) as exc:
        unauthorized = f"refused: {exc!r}"
    else:
        raise ProbeError(f"{intruder['sasl_plain_username']} (no ACLs) wrote an event to {topic}")
    finally:
        producer.close(timeout=5)
    after = _end_offsets(bootstrap, topic, login)
    if after != before:
        raise ProbeError(f"{topic} end offsets moved from {before} to {after}")
    return {"plaintext": plaintext, "write_without_acl": unauthorized, "end_offsets": after}


def probe_topics(bootstrap: str, expected: dict[str, int], timeout: float, login: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **login)
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


def probe_targets(prometheus: str, expect: int, timeout: float, login: dict[str, Any] | None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            url = f"{prometheus}/api/v1/targets?state=active"
            active = _get_json(url, timeout=5, login=login)["data"]["activeTargets"]
        except OSError as exc:
            active, error = [], str(exc)
        else:
            error = ""
        health = {t["scrapeUrl"]: t["health"] for t in active}
        # why each is not up, as Prometheus saw it: its last error and how long the last scrape took
        down = {
            t["scrapeUrl"]: f"{t['health']}: {t.get('lastError') or 'no error'}"
            f" (last scrape {t.get('lastScrapeDuration', 0):.1f} s, timeout {t.get('scrapeTimeout', '?')})"
            for t in active
            if t["health"] != "up"
        }
        if len(health) >= expect and not down:
            return {"targets_up": sorted(health)}
        if time.monotonic() > deadline:
            raise ProbeError(f"{len(health)} targets (expected at least {expect}), not up: {down} {error}")
        time.sleep(2)


def _web_login(
    parser: argparse.ArgumentParser, ca: str | None, user: str | None, password_file: str | None
) -> dict[str, Any] | None:
    """The PROMETHEUS LOGIN options: all three or none."""
    given = [ca, user, password_file]
    if not any(given):
        return None
    if not all(given):
        parser.error("--ca, --user and --password-file go together")
    assert password_file is not None
    return {"ca": ca, "user": user, "password": Path(password_file).read_text().split()[0]}


def _status_code(name: str) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[name.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"not a gRPC status: {name}") from None


def _topic_spec(text: str) -> tuple[str, int]:
    name, _, partitions = text.partition("=")
    if not name or not partitions.isdigit():
        raise argparse.ArgumentTypeError(f"want NAME=PARTITIONS, got {text!r}")
    return name, int(partitions)


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", type=Path, help="PEM CA: call the adder over TLS, trusting only it")
    parser.add_argument("--cert", type=Path, help="PEM client certificate (mutual TLS), with --key")
    parser.add_argument("--key", type=Path, help="PEM private key of --cert")


def _kafka_commands(commands: Any) -> None:
    """The `topics` and `kafka-refusals` subcommands, both with the KAFKA LOGIN options."""
    topics = commands.add_parser("topics")
    topics.add_argument("--bootstrap", required=True)
    topics.add_argument("--topic", type=_topic_spec, action="append", required=True)
    topics.add_argument("--timeout", type=float, default=60.0)
    refusals = commands.add_parser("kafka-refusals")
    refusals.add_argument("--bootstrap", required=True)
    refusals.add_argument("--topic", required=True)
    refusals.add_argument("--intruder", required=True, help="an authenticated Kafka user without ACLs")
    refusals.add_argument("--intruder-password-file", required=True)
    for command in (topics, refusals):
        command.add_argument("--ca", help="CA file: SASL_SSL instead of PLAINTEXT")
        command.add_argument("--user")
        command.add_argument("--password-file")


def _targets_command(commands: Any) -> None:
    """The `targets` subcommand, with the PROMETHEUS LOGIN options."""
    targets = commands.add_parser("targets")
    targets.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    targets.add_argument("--expect", type=int, required=True, help="fewest active targets")
    targets.add_argument("--timeout", type=float, default=120.0)
    targets.add_argument("--ca", help="CA file: https checked against it, with --user and --password-file")
    targets.add_argument("--user", help="HTTP basic-auth user")
    targets.add_argument("--password-file", help="file holding its password")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    flow = commands.add_parser("flow")
    flow.add_argument("--adder", required=True, help="HOST:PORT of the adder's gRPC server")
    flow.add_argument("--accumulator", required=True, help="base URL of the accumulator")
    flow.add_argument("--timeout", type=float, default=120.0)
    flow.add_argument("--settle", type=float, default=3.0, help="seconds to watch the total after the retry")
    _tls_options(flow)
    refused = commands.add_parser("refused")
    refused.add_argument("--adder", required=True, help="HOST:PORT of the adder's gRPC server")
    _tls_options(refused)
    served = commands.add_parser("served-cert")
    served.add_argument("--adder", required=True, help="HOST:PORT of the adder's gRPC server")
    served.add_argument("--ca", type=Path, required=True, help="PEM CA the certificate must chain to")
    served.add_argument("--expect-cert", type=Path, required=True, help="PEM certificate it must serve")
    stream = commands.add_parser("stream")
    stream.add_argument("--adder", required=True, help="HOST:PORT of the adder's gRPC server")
    stream.add_argument(
        "--accumulator",
        action="append",
        required=True,
        help="base URL of an accumulator; repeat for replicas: each must count every call exactly once",
    )
    stream.add_argument("--until-file", type=Path, required=True, help="stop calling once this file exists")
    stream.add_argument("--max-seconds", type=float, default=600.0, help="fail if the file has not appeared by then")
    stream.add_argument("--timeout", type=float, default=120.0, help="deadline of one call's retries, and of the total")
    stream.add_argument("--rate", type=float, help="calls per second (a fixed schedule); default: back to back")
    stream.add_argument(
        "--retry",
        type=_status_code,
        action="append",
        help=f"a status retried with the same id (repeatable); default: {', '.join(sorted(c.name for c in RETRIED))};"
        " any other status fails the stream",
    )
    _tls_options(stream)
    _kafka_commands(commands)
    _targets_command(commands)
    args = parser.parse_args(argv)
    tls: Tls = (getattr(args, "ca", None), getattr(args, "cert", None), getattr(args, "key", None))
    if (tls[1] is None) != (tls[2] is None) or (tls[1] is not None and tls[0] is None):
        parser.error("--cert and --key go together, and with --ca")
    try:
        if args.command == "flow":
            result = probe_flow(args.adder, args.accumulator, tls, args.timeout, args.settle)
        elif args.command == "refused":
            result = probe_refused(args.adder, tls)
        elif args.command == "served-cert":
            result = probe_served_cert(args.adder, args.ca, args.expect_cert)
        elif args.command == "stream":
            result = probe_stream(
                args.adder,
                args.accumulator,
                tls,
                until_file=args.until_file,
                max_seconds=args.max_seconds,
                timeout=args.timeout,
                rate=args.rate,
                retried=frozenset(args.retry) if args.retry else RETRIED,
            )
        elif args.command == "targets":
            result = probe_targets(
                args.prometheus, args.expect, args.timeout, _web_login(parser, args.ca, args.user, args.password_file)
            )
        elif args.command == "kafka-refusals":
            intruder = _login(args.ca, args.intruder, args.intruder_password_file)
            result = probe_kafka_refusals(
                args.bootstrap, args.topic, _login(args.ca, args.user, args.password_file), intruder
            )
        else:
            result = probe_topics(
                args.bootstrap, dict(args.topic), args.timeout, _login(args.ca, args.user, args.password_file)
            )
    except ProbeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
