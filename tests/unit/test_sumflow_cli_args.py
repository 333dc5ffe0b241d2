"""`sumflow` argument parsing, endpoint options and output formatting (no services needed)."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import grpc
import pytest

from sumflow.entrypoints.cli_add import AddAnswer, exit_code_for, explain
from sumflow.entrypoints.cli_endpoints import CliError, Endpoints
from sumflow.entrypoints.cli_main import build_parser
from sumflow.entrypoints.cli_read import (
    ServiceStatus,
    build_version,
    format_status,
    format_summations,
    format_total,
    parse_metrics,
)
from sumflow.entrypoints.progress_bar import format_duration, render_line


def parse(*argv: str, environ: dict[str, str] | None = None) -> argparse.Namespace:
    return build_parser(environ or {}).parse_args(argv)


def test_add_takes_signed_64_bit_numbers_and_an_optional_id() -> None:
    args = parse("add", "-5", str(2**63 - 1))
    assert (args.first, args.second, args.request_id) == (-5, 2**63 - 1, None)
    assert parse("add", "1", "2", "--id", "abc").request_id == "abc"  # the adder judges the id


@pytest.mark.parametrize("bad", [str(2**63), str(-(2**63) - 1), "1.5", "x"])
def test_add_refuses_numbers_a_call_cannot_carry(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("add", "1", bad)
    assert exited.value.code == 2
    assert "argument B:" in capsys.readouterr().err


@pytest.mark.parametrize(("raw", "ok"), [("1", True), ("1000", True), ("0", False), ("1001", False), ("-1", False)])
def test_summations_limit_is_1_to_1000(raw: str, ok: bool) -> None:
    if ok:
        assert parse("summations", "--limit", raw).limit == int(raw)
    else:
        with pytest.raises(SystemExit):
            parse("summations", "--limit", raw)


def test_endpoints_come_from_flags_then_environment_then_defaults() -> None:
    defaults = Endpoints.from_args(parse("total"))
    assert (defaults.adder, defaults.accumulator, defaults.tls) == ("127.0.0.1:50051", "http://127.0.0.1:8080", False)
    env = {"SUMFLOW_ADDER_TARGET": "a:1", "SUMFLOW_ACCUMULATOR_URL": "https://b:2/", "SUMFLOW_TLS_CA": "/ca.pem"}
    from_env = Endpoints.from_args(parse("total", environ=env))
    assert (from_env.adder, from_env.accumulator, from_env.tls) == ("a:1", "https://b:2", True)
    flag = Endpoints.from_args(parse("total", "--adder", "c:3", environ=env))
    assert flag.adder == "c:3"


def test_tls_options_are_checked() -> None:
    with pytest.raises(CliError) as half:
        Endpoints.from_args(parse("status", "--cert", "c.pem"))
    assert half.value.exit_code == 2
    with pytest.raises(CliError, match="expected an http:// or https:// URL"):
        Endpoints.from_args(parse("status", "--accumulator", "file:///etc/passwd"))
    with pytest.raises(CliError, match=r"cannot read /nonexistent/ca\.pem"):
        Endpoints.from_args(parse("status", "--ca", "/nonexistent/ca.pem")).grpc_credentials()
    assert Endpoints.from_args(parse("status")).grpc_credentials() is None
    assert Endpoints.from_args(parse("status", "--tls")).grpc_credentials() is not None


def test_metrics_credentials_go_together_and_travel_over_https_only(tmp_path: Path) -> None:
    for half in (("--metrics-user", "prometheus"), ("--metrics-password-file", "/p")):
        with pytest.raises(CliError, match="go together") as refused:
            Endpoints.from_args(parse("status", *half))
        assert refused.value.exit_code == 2
    password = tmp_path / "password"
    password.write_text("s3cret-Pass\nignored second line\n")
    env = {"SUMFLOW_METRICS_USER": "prometheus", "SUMFLOW_METRICS_PASSWORD_FILE": str(password)}
    endpoints = Endpoints.from_args(parse("status", environ=env))
    header = endpoints.metrics_authorization("https://app1:9464/metrics")
    assert header == {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret-Pass").decode()}
    assert endpoints.metrics_authorization("http://app1:9464/metrics") == {}
    assert Endpoints.from_args(parse("status")).metrics_authorization("https://app1:9464/metrics") == {}
    missing = Endpoints.from_args(
        parse("status", "--metrics-user", "prometheus", "--metrics-password-file", str(tmp_path / "none"))
    )
    with pytest.raises(CliError, match="cannot read") as unreadable:
        missing.metrics_authorization("https://app1:8080/metrics")
    assert unreadable.value.exit_code == 2


def test_each_grpc_status_has_its_own_exit_code_and_message() -> None:
    endpoints = Endpoints.from_args(parse("add", "1", "2"))
    codes = list(grpc.StatusCode)[1:]  # every status but OK
    assert len({exit_code_for(code) for code in codes}) == len(codes)
    assert {
        exit_code_for(c): c.name
        for c in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.UNAVAILABLE,
        )
    } == {13: "INVALID_ARGUMENT", 14: "DEADLINE_EXCEEDED", 16: "ALREADY_EXISTS", 21: "OUT_OF_RANGE", 24: "UNAVAILABLE"}
    messages = {explain(code, "why", "rid", endpoints) for code in codes}
    assert len(messages) >= 7
    assert (
        explain(grpc.StatusCode.INTERNAL, "boom", "rid", endpoints)
        == "adder at 127.0.0.1:50051 answered INTERNAL: boom"
    )


def test_answers_and_totals_read_as_one_line() -> None:
    assert AddAnswer(40, 2, "r", 42, False).text() == "40 + 2 = 42  request_id r  new"
    assert AddAnswer(40, 2, "r", 42, True).text().endswith("duplicate (the first answer; nothing added again)")
    assert format_total({"total": 42, "applied": 1}) == "total 42  (1 summation applied)"
    assert format_total({"total": 0, "applied": 0}) == "total 0  (0 summations applied)"


def test_summations_table_aligns_numbers_right() -> None:
    row = {"applied_at": "2026-12-07T08:00:00.000Z", "request_id": "r1", "first_number": 40, "second_number": 2}
    text = format_summations([{**row, "result": 42}, {**row, "request_id": "r2", "first_number": -1, "result": 1}])
    lines = text.splitlines()
    assert lines[0].startswith("applied at") and lines[1].endswith("   40       2      42")
    assert format_summations([]).endswith("(no summations applied yet)")


def test_status_reads_version_and_lag_from_metrics_text() -> None:
    samples = parse_metrics(
        '# TYPE sumflow_build info\nsumflow_build_info{service="adder",version="9.9.9"} 1.0\n'
        "# TYPE sumflow_accumulator_consumer_lag gauge\n"
        'sumflow_accumulator_consumer_lag{partition="0"} 3.0\nsumflow_accumulator_consumer_lag{partition="1"} 4.0\n'
    )
    assert build_version(samples) == "9.9.9"
    accumulator = ServiceStatus("accumulator", "http://h:1", True, True, "ready", "9.9.9", {"0": 3.0, "1": 4.0})
    adder = ServiceStatus("adder", "h:2", True, True, "SERVING", "9.9.9")
    lines = format_status([adder, accumulator]).splitlines()
    assert lines[0].split() == ["adder", "h:2", "health", "SERVING", "version", "9.9.9"]
    assert "alive yes  ready yes  lag 7 (p0 3, p1 4)  version 9.9.9" in lines[1]
    assert accumulator.json()["consumer_lag"] == {"0": 3, "1": 4}


def test_progress_line_shows_records_rate_and_time_left() -> None:
    assert (
        render_line("topic", 250, 1000, 5.0)
        == "topic [#######.......................] 250/1,000 records  50/s  15s left"
    )
    assert render_line("audit", 0, 0, 0.0).endswith("0/0 records  0/s  0s left")
    assert [format_duration(s) for s in (0, 59.6, 61, 3725)] == ["0s", "1m00s", "1m01s", "1h02m"]
