"""The load generators: ghz (gRPC, Apache-2.0, built from the Go module proxy) and wrk (Debian)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@v0.93.0"
CACHE = Path(os.environ.get("SUMFLOW_CACHE", Path.home() / ".cache" / "sumflow"))
ADD_CALL = "sumflow.v1.SumService.AddNumbers"
# Fresh id per call (ghz template), fixed operands: every call publishes one event.
FRESH_PAYLOAD = '{"request_id":"{{newUUID}}","first_number":1,"second_number":2}'


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    errors: int
    ok: int  # calls answered OK (gRPC) / requests answered 2xx-3xx (HTTP)
    rps: float
    p50_ms: float
    p99_ms: float
    error_kinds: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ghz_binary() -> str:
    """ghz from $GHZ, PATH or the cache; built with `go install` into the cache when missing."""
    for candidate in (os.environ.get("GHZ"), shutil.which("ghz"), str(CACHE / "bin" / "ghz")):
        if candidate and Path(candidate).is_file():
            return candidate
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError("ghz missing and no Go toolchain to build it (go install " + GHZ_MODULE + ")")
    (CACHE / "bin").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(CACHE / "bin")}
    subprocess.run([go, "install", GHZ_MODULE], check=True, env=env, timeout=900)
    return str(CACHE / "bin" / "ghz")


def wrk_binary() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk missing: apt-get install -y wrk")
    return wrk


def run_ghz(
    target: str,
    *,
    concurrency: int,
    duration_s: float,
    connections: int = 1,
    rps: int | None = None,
    payload: str = FRESH_PAYLOAD,
) -> LoadResult:
    """Unary AddNumbers calls for `duration_s` (closed model, or rate-limited with `rps`).

    Calls still in flight when the duration ends are waited for (`--duration-stop wait`), so `ok`
    is exactly the number of calls the server answered OK: what the total must count.
    """
    cmd = [
        ghz_binary(),
        "--insecure",
        "--proto",
        str(REPO / "proto" / "sumflow" / "v1" / "sum.proto"),
        "--import-paths",
        str(REPO / "proto"),
        "--call",
        ADD_CALL,
        "--data",
        payload,
        "--concurrency",
        str(concurrency),
        "--connections",
        str(max(1, min(connections, concurrency))),
        "--duration",
        f"{duration_s}s",
        "--duration-stop",
        "wait",
        "--timeout",
        "10s",
        "--format",
        "json",
    ]
    if rps is not None:
        cmd += ["--rps", str(rps)]
    cmd.append(target)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if not proc.stdout.strip():
        raise RuntimeError(f"ghz failed ({proc.returncode}): {proc.stderr.strip()}")
    report = json.loads(proc.stdout)
    dist = {int(d["percentage"]): d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    codes = report.get("statusCodeDistribution") or {}
    ok = int(codes.get("OK", 0))
    count = int(report.get("count", 0))
    total_s = report.get("total", 0) / 1e9 or duration_s
    kinds = {k: int(v) for k, v in (report.get("errorDistribution") or {}).items()}
    return LoadResult(
        requests=count,
        errors=count - ok,
        ok=ok,
        rps=ok / total_s,
        p50_ms=dist.get(50, float("nan")),
        p99_ms=dist.get(99, float("nan")),
        error_kinds=kinds,
    )


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, *, connections: int, duration_s: int, threads: int = 1) -> LoadResult:
    """HTTP GET load with wrk (closed model), latency percentiles from --latency."""
    cmd = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "--latency", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    out = proc.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.MULTILINE)}
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return LoadResult(
        requests=requests,
        errors=errors,
        ok=requests - errors,
        rps=rps,
        p50_ms=pct.get(50, float("nan")),
        p99_ms=pct.get(99, float("nan")),
        error_kinds={},
    )
