"""Real Prometheus and node_exporter on loopback free ports (CommandProcess), for the observability
tests. Needs PyYAML (a test dependency): `make run` never imports this module."""

from __future__ import annotations

import contextlib
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml

from harness.http_client import http_ok
from harness.ports import free_port
from harness.processes import CommandProcess

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter") or ""


@contextlib.contextmanager
def node_exporter(workdir: Path) -> Iterator[str]:
    """node_exporter with the collectors our panels and alerts use; yields its host:port."""
    if not NODE_EXPORTER:
        raise RuntimeError("node_exporter not found: install Debian's prometheus-node-exporter package")
    port = free_port()
    argv = [
        NODE_EXPORTER,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
        "--collector.filesystem",
    ]
    process = CommandProcess("node_exporter", argv, workdir, ready=lambda: http_ok(f"http://127.0.0.1:{port}/metrics"))
    with process.running(timeout=20):
        yield f"127.0.0.1:{port}"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
            body = orjson.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: str = "2s") -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)["result"]

    def targets_up(self) -> dict[str, str]:
        data = self.api("targets")
        return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}


@contextlib.contextmanager
def prometheus(workdir: Path, jobs: dict[str, dict[str, Any]], rule_files: list[Path]) -> Iterator[Prometheus]:
    """Prometheus 2.42+ scraping `jobs` ({name: {"targets": [...], "metrics_path": ...}}) every second,
    with exemplar storage, evaluating `rule_files`."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": name,
                "metrics_path": job.get("metrics_path", "/metrics"),
                "static_configs": [{"targets": job["targets"]}],
            }
            for name, job in jobs.items()
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        PROMETHEUS,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    process = CommandProcess("prometheus", argv, workdir, ready=lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"))
    with process.running(timeout=30):
        yield Prometheus(f"http://127.0.0.1:{port}")
