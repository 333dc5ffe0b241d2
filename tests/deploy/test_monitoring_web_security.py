"""Prometheus and node_exporter behind HTTPS and basic auth, with the files the real roles write.

The real ansible-playbook runs, on this machine (one monitoring host `mon` at 127.0.0.1, local
connection): roles/pki (the CA and the host certificate on the controller), then the web-security steps
of roles/node_exporter and roles/prometheus (their tasks/web.yml: the pki install, web.yml through
roles/exporter_web with the passwords bcrypt-hashed on the controller, the scrape password files),
and renders both roles' units and prometheus.yml from their templates, every directory under a
temporary one. Then the real binaries (Debian's prometheus and prometheus-node-exporter) load the
rendered web.yml through the --web.config.file flag their rendered units pass, on loopback ports:
no password, a wrong one, plaintext HTTP and a client without our CA are refused, the right password
over TLS checked against the CA gets 200, and Prometheus with the rendered prometheus.yml scrapes
node_exporter and itself over https with basic auth and reports both up.
"""

from __future__ import annotations

import base64
import getpass
import grp
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.ports import free_port
from harness.processes import CommandProcess
from harness.prometheus import NODE_EXPORTER, PROMETHEUS
from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, REPO, run_playbook

PROMTOOL = Path(PROMETHEUS).with_name("promtool")
HOST = "mon"


def _render_tasks(out: str) -> list[dict[str, Any]]:
    def template(role: str, src: str) -> dict[str, Any]:
        return {
            "name": f"render {src}",
            "ansible.builtin.template": {
                "src": str(REPO / "roles" / role / "templates" / src),
                "dest": f"{out}/{src[:-3]}",
            },
        }

    return [
        {"name": "output dir", "ansible.builtin.file": {"path": out, "state": "directory", "mode": "0755"}},
        {
            "name": "node_exporter's web security",
            "ansible.builtin.include_role": {"name": "node_exporter", "tasks_from": "web.yml", "public": True},
        },
        template("node_exporter", "node_exporter.service.j2"),
        {
            "name": "Prometheus' web security and scrape credentials",
            "ansible.builtin.include_role": {"name": "prometheus", "tasks_from": "web.yml", "public": True},
        },
        template("prometheus", "prometheus.service.j2"),
        template("prometheus", "prometheus.yml.j2"),
    ]


@dataclass(frozen=True)
class Secured:
    root: Path
    out: Path
    ports: dict[str, int]
    first_output: str

    @property
    def ca(self) -> Path:
        return self.root / "controller-pki/ca.crt"

    def password(self, name: str) -> str:
        return (self.root / "controller-cache/credentials" / f"{name}_password").read_text().split()[0]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_playbook(
            self.root / "hosts.yml",
            self.root / "playbook.yml",
            json.loads((self.root / "extra.json").read_text()),
            *args,
            tmp=self.root,
            roles_path=REPO / "roles",
        )

    def web_flag(self, unit: str) -> str:
        """The --web.config.file argument of the rendered unit's ExecStart."""
        flags = re.findall(r"--web\.config\.file=(\S+)", (self.out / unit).read_text())
        assert len(flags) == 1, (unit, flags)
        return flags[0]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Secured:
    root = tmp_path_factory.mktemp("web-security")
    ports = {"node_exporter": free_port(), "prometheus": free_port()}
    promtool_dir = root / "prometheus-home"
    promtool_dir.mkdir()
    (promtool_dir / "promtool").symlink_to(PROMTOOL)
    inventory = {"all": {"children": {"monitoring": {"hosts": {HOST: {"ansible_host": "127.0.0.1"}}}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    play = [{"name": "web security", "hosts": "monitoring", "gather_facts": False, "roles": ["pki"]}]
    play[0]["tasks"] = _render_tasks(str(root / "out"))
    (root / "playbook.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    extra = {
        **LOCAL_CONNECTION,
        "sumflow_controller_cache": str(root / "controller-cache"),
        "sumflow_grafana_stack_enabled": False,
        "pki_dir": str(root / "controller-pki"),
        "pki_install_dir_owner": user,
        "node_exporter_user": user,
        "node_exporter_group": group,
        "node_exporter_web_dir": str(root / "node_exporter"),
        "node_exporter_listen_address": "127.0.0.1",
        "node_exporter_port": ports["node_exporter"],
        "prometheus_user": user,
        "prometheus_group": group,
        "prometheus_home": str(promtool_dir),
        "prometheus_config_dir": str(root / "prometheus"),
        "prometheus_data_dir": str(root / "tsdb"),
        "prometheus_listen_address": "127.0.0.1",
        "prometheus_port": ports["prometheus"],
        "prometheus_global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
    }
    (root / "extra.json").write_text(json.dumps(extra))
    setup = Secured(root, root / "out", ports, "")
    first = setup.run("-vvv", "--diff")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    return Secured(root, root / "out", ports, first.stdout + first.stderr)


def _get(url: str, ca: Path | None, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET; https is checked against `ca` (None: the system's trust store)."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _answers(url: str, ca: Path, auth: tuple[str, str]) -> bool:
    try:
        return _get(url, ca, auth, timeout=2.0)[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def node_exporter(secured: Secured, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's node_exporter with the web.yml of the role, as its rendered unit passes it."""
    if not NODE_EXPORTER:
        pytest.fail(
            "node_exporter not found: install Debian's prometheus-node-exporter (scripts/install-system-deps.sh)"
        )
    base = f"https://127.0.0.1:{secured.ports['node_exporter']}"
    auth = ("prometheus", secured.password("node_exporter_web"))
    argv = [
        NODE_EXPORTER,
        f"--web.listen-address=127.0.0.1:{secured.ports['node_exporter']}",
        f"--web.config.file={secured.web_flag('node_exporter.service')}",
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
    ]
    workdir = tmp_path_factory.mktemp("node-exporter-run")
    process = CommandProcess(
        "node_exporter", argv, workdir, ready=lambda: _answers(f"{base}/metrics", secured.ca, auth)
    )
    with process.running(timeout=30):
        yield base


@pytest.fixture(scope="module")
def prometheus(secured: Secured, node_exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus with the rendered prometheus.yml and the role's web.yml."""
    base = f"https://127.0.0.1:{secured.ports['prometheus']}"
    auth = ("sumflow", secured.password("prometheus_web"))
    workdir = tmp_path_factory.mktemp("prometheus-run")
    argv = [
        PROMETHEUS,
        f"--config.file={secured.out / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{secured.ports['prometheus']}",
        f"--web.config.file={secured.web_flag('prometheus.service')}",
        "--log.level=warn",
    ]
    process = CommandProcess("prometheus", argv, workdir, ready=lambda: _answers(f"{base}/-/ready", secured.ca, auth))
    with process.running(timeout=60):
        yield base


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --- what the roles wrote -----------------------------------------------------------------------------------


def test_web_configs_hold_bcrypt_hashes_and_the_host_certificate(secured: Secured) -> None:
    for unit, dir_name, user, secret in (
        ("node_exporter.service", "node_exporter", "prometheus", "node_exporter_web"),
        ("prometheus.service", "prometheus/web", "sumflow", "prometheus_web"),
    ):
        web_path = Path(secured.web_flag(unit))
        assert web_path == secured.root / dir_name / "web.yml"
        web = yaml.safe_load(web_path.read_text())
        assert web["tls_server_config"]["cert_file"] == str(web_path.parent / "tls.crt")
        assert web["tls_server_config"]["key_file"] == str(web_path.parent / "tls.key")
        (hashed,) = web["basic_auth_users"].values()
        assert list(web["basic_auth_users"]) == [user]
        assert re.fullmatch(r"\$2b\$10\$[./A-Za-z0-9]{53}", hashed), hashed
        password = secured.password(secret)
        assert len(password) == 40 and password not in web_path.read_text()
        assert _mode(web_path) == 0o640
        assert _mode(web_path.parent / "tls.key") == 0o600
        # promtool accepts it (the prometheus role runs this check before it replaces web.yml).
        check = subprocess.run([str(PROMTOOL), "check", "web-config", str(web_path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_scrape_jobs_use_https_the_ca_and_password_files(secured: Secured) -> None:
    config = yaml.safe_load((secured.out / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node"}, set(jobs)
    web = secured.root / "prometheus/web"
    for name, user, password_file, secret in (
        ("node", "prometheus", "scrape.password", "node_exporter_web"),
        ("prometheus", "sumflow", "prometheus.password", "prometheus_web"),
    ):
        job = jobs[name]
        assert job["scheme"] == "https"
        assert job["tls_config"] == {"ca_file": str(web / "ca.crt")}
        assert job["basic_auth"] == {"username": user, "password_file": str(web / password_file)}
        assert (web / password_file).read_text() == secured.password(secret)
        assert _mode(web / password_file) == 0o640
    check = subprocess.run(
        [str(PROMTOOL), "check", "config", str(secured.out / "prometheus.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_password_in_ansible_output(secured: Secured) -> None:
    for secret in ("node_exporter_web", "prometheus_web"):
        assert secured.password(secret) not in secured.first_output


def test_switched_off_both_serve_plain_http_and_are_scraped_so(secured: Secured, tmp_path: Path) -> None:
    """prometheus_web_security_enabled / node_exporter_web_security_enabled false: no web config."""
    for name in ("hosts.yml", "playbook.yml"):
        (tmp_path / name).write_text((secured.root / name).read_text().replace(str(secured.root), str(tmp_path)))
    extra = json.loads((secured.root / "extra.json").read_text().replace(str(secured.root), str(tmp_path)))
    extra |= {"prometheus_web_security_enabled": False, "node_exporter_web_security_enabled": False}
    proc = run_playbook(
        tmp_path / "hosts.yml", tmp_path / "playbook.yml", extra, tmp=tmp_path, roles_path=REPO / "roles"
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for unit in ("node_exporter.service", "prometheus.service"):
        assert "--web.config.file" not in (tmp_path / "out" / unit).read_text()
    assert not (tmp_path / "node_exporter").exists() and not (tmp_path / "prometheus/web").exists()
    config = yaml.safe_load((tmp_path / "out/prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        assert "basic_auth" not in job and "tls_config" not in job and job.get("scheme", "http") == "http", job


def test_a_second_run_changes_nothing(secured: Secured) -> None:
    """The bcrypt salt is derived from host, user and password: the same web.yml every run."""
    before = {p: p.read_bytes() for p in secured.root.glob("*/**/*") if p.is_file() and "tmp" not in p.parts}
    again = secured.run()
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    changed = re.findall(r"^\S+\s*: ok=\d+\s+changed=(\d+)", again.stdout, re.M)
    assert changed == ["0"], again.stdout[-4000:]
    assert {p: p.read_bytes() for p in before} == before


# --- the real binaries with those files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "user", "secret"),
    [
        ("node_exporter", "/metrics", "prometheus", "node_exporter_web"),
        ("prometheus", "/api/v1/status/buildinfo", "sumflow", "prometheus_web"),
    ],
)
def test_only_the_right_password_over_tls_gets_in(
    secured: Secured, prometheus: str, node_exporter: str, target: str, path: str, user: str, secret: str
) -> None:
    base = {"node_exporter": node_exporter, "prometheus": prometheus}[target]
    url = base + path
    password = secured.password(secret)

    assert _get(url, secured.ca)[0] == 401
    assert _get(url, secured.ca, (user, password[:-1] + ("x" if password[-1] != "x" else "y")))[0] == 401
    assert _get(url, secured.ca, ("someone-else", password))[0] == 401
    status, body = _get(url, secured.ca, (user, password))
    assert status == 200, body[:500]
    assert (b"node_cpu_seconds_total" if target == "node_exporter" else b'"status":"success"') in body

    # Plaintext HTTP on the same port: Go's TLS server answers 400 and serves nothing.
    status, body = _get(url.replace("https://", "http://"), None, (user, password))
    assert status == 400 and b"HTTPS server" in body, (status, body[:300])
    # A client that does not trust our CA does not get through the handshake.
    with pytest.raises(urllib.error.URLError) as refused:
        _get(url, None, (user, password))
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError), refused.value


def test_prometheus_scrapes_node_exporter_and_itself_over_https_with_auth(secured: Secured, prometheus: str) -> None:
    auth = ("sumflow", secured.password("prometheus_web"))
    deadline = time.monotonic() + 60
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        status, body = _get(f"{prometheus}/api/v1/targets?state=active", secured.ca, auth)
        assert status == 200, body[:500]
        targets = json.loads(body)["data"]["activeTargets"]
        if len(targets) == 2 and all(t["health"] == "up" for t in targets):
            break
        time.sleep(0.5)
    health = {t["labels"]["job"]: (t["health"], t["scrapeUrl"], t["lastError"]) for t in targets}
    assert health == {
        "node": ("up", f"https://127.0.0.1:{secured.ports['node_exporter']}/metrics", ""),
        "prometheus": ("up", f"https://127.0.0.1:{secured.ports['prometheus']}/metrics", ""),
    }, health
    status, body = _get(f"{prometheus}/api/v1/query?query=up", secured.ca, auth)
    assert status == 200
    assert {r["metric"]["job"]: r["value"][1] for r in json.loads(body)["data"]["result"]} == {
        "node": "1",
        "prometheus": "1",
    }


def test_the_deployment_probe_logs_in_to_read_the_targets(secured: Secured, prometheus: str) -> None:
    """molecule/default/files/deployment_probe.py `targets`, as Molecule and scripts/vagrant/test.sh run it."""
    probe = [sys.executable, str(REPO / "molecule/default/files/deployment_probe.py"), "targets"]
    login = [
        f"--ca={secured.ca}",
        "--user=sumflow",
        f"--password-file={secured.root / 'controller-cache/credentials/prometheus_web_password'}",
    ]
    seen = subprocess.run(
        [*probe, f"--prometheus={prometheus}", "--expect=2", "--timeout=60", *login],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert json.loads(seen.stdout)["targets_up"] == sorted(
        f"https://127.0.0.1:{secured.ports[name]}/metrics" for name in ("node_exporter", "prometheus")
    )
    # Without the login it never sees a target (and says so).
    refused = subprocess.run(
        [*probe, f"--prometheus={prometheus}", "--expect=1", "--timeout=1"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "0 targets" in refused.stderr, refused.stdout + refused.stderr
