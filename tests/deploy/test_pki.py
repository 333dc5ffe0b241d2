"""roles/pki run by the real ansible-playbook: the internal CA and the host certificates on the
controller (tasks/main.yml) and their install on the hosts (tasks_from: install); and the sumflow
role's use of them (its tasks/tls.yml, the adder's environment file, the readiness gate's arguments,
the restart mark when a file changed).

The controller is this machine and so are the two hosts of a small inventory (ansible_connection=local,
no become); pki_dir and each host's install directory are temporary directories. The certificates are
read back with `cryptography`: the CA, the SANs and usages of each leaf, its signature by the CA; the
key files' modes; a second run changing nothing; re-issue near the expiry, on changed names and with
pki_force; and no private key in Ansible's output.
"""

from __future__ import annotations

import datetime
import getpass
import grp
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, run_playbook

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HOSTS = {
    "app-a": {"ansible_host": "10.9.8.7", "pki_extra_sans": []},
    "app-b": {"ansible_host": "b.example.test", "pki_extra_sans": ["DNS:alias.example.test", "192.0.2.5"]},
}
PLAYBOOK = [
    {
        "name": "Issue and install the TLS files",
        "hosts": "tls",
        "gather_facts": False,
        "roles": ["pki"],
        "tasks": [
            {
                "name": "Install this host's TLS files",
                "ansible.builtin.include_role": {"name": "pki", "tasks_from": "install"},
                "vars": {"pki_install_dir": "{{ tls_root }}/{{ inventory_hostname }}"},
            },
            {
                "name": "Report",
                "ansible.builtin.debug": {
                    "msg": "pki_install_changed {{ inventory_hostname }}={{ pki_install_changed }}"
                },
            },
        ],
    }
]


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def changed(self) -> dict[str, int]:
        return {h: int(n) for h, n in re.findall(r"^(\S+)\s*: ok=\d+\s+changed=(\d+)", self.proc.stdout, re.M)}

    def install_changed(self) -> dict[str, bool]:
        # The message names its host: the hosts' results come in any order, and other tasks' results
        # lie between them (with -vvv), so a "host => ... msg" match could pair one host with another's.
        found = re.findall(r'"msg": "pki_install_changed (\S+)=(True|False)"', self.proc.stdout)
        return {h: v == "True" for h, v in found}


# The sumflow role's TLS step as app.yml runs it (pki main first), then the adder's environment file
# rendered from the role's template and what the run phase would do.
SUMFLOW_PLAYBOOK = [
    {
        "name": "The sumflow role's TLS files",
        "hosts": "tls",
        "gather_facts": False,
        "roles": ["pki"],
        "tasks": [
            {
                "name": "Install the TLS files",
                "ansible.builtin.include_role": {"name": "sumflow", "tasks_from": "tls.yml", "public": True},
            },
            {"name": "Apply the handlers", "ansible.builtin.meta": "flush_handlers"},
            {
                "name": "Render the adder's environment file",
                "ansible.builtin.template": {
                    "src": str(REPO / "roles/sumflow/templates/adder.env.j2"),
                    "dest": "{{ tls_root }}/{{ inventory_hostname }}.adder.env",
                    "mode": "0600",
                },
            },
            {
                "name": "Report",
                "ansible.builtin.debug": {
                    "msg": "restart_adder={{ sumflow_restart_adder | default(false) }} "
                    "gate={{ (sumflow_wait_ready_argv + sumflow_wait_ready_targets['adder']) | to_json }}"
                },
            },
        ],
    }
]


@dataclass
class Setup:
    root: Path

    @property
    def pki_dir(self) -> Path:
        return self.root / "controller-pki"

    @property
    def tls_root(self) -> Path:
        return self.root / "hosts"

    def run(
        self,
        extra: dict[str, Any] | None = None,
        *args: str,
        hosts: dict[str, Any] = HOSTS,
        play: list[dict[str, Any]] = PLAYBOOK,
    ) -> Run:
        inventory = self.root / "hosts.yml"
        groups = {"tls": {"hosts": hosts}, "adder": {"hosts": dict.fromkeys(hosts)}}
        inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
        playbook = self.root / "playbook.yml"
        playbook.write_text(yaml.safe_dump(play, sort_keys=False))
        local = {
            **LOCAL_CONNECTION,
            "pki_dir": str(self.pki_dir),
            "tls_root": str(self.tls_root),
            "pki_install_owner": getpass.getuser(),
            "pki_install_dir_owner": getpass.getuser(),
            "pki_install_group": grp.getgrgid(os.getgid()).gr_name,
        }
        proc = run_playbook(
            inventory,
            playbook,
            {**local, **(extra or {})},
            *args,
            tmp=self.root,
            roles_path=REPO / "roles",
            env={"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
            cwd=self.root,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        return Run(proc)

    def cert(self, relative: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.pki_dir / relative).read_bytes())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Setup, Run]:
    """One first run (verbose, with diffs) that the tests below start from, each on its own copy."""
    issued = Setup(tmp_path_factory.mktemp("pki-first-run"))
    return issued, issued.run({}, "-vvv", "--diff")


@pytest.fixture
def issued(first_run: tuple[Setup, Run], tmp_path: Path) -> Setup:
    """A copy of the first run's controller and host files (modes kept)."""
    copy = Setup(tmp_path / "copy")
    for name in ("controller-pki", "hosts"):
        shutil.copytree(first_run[0].root / name, copy.root / name)
    return copy


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _sans(cert: x509.Certificate) -> set[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {f"DNS:{n}" for n in names.get_values_for_type(x509.DNSName)} | {
        f"IP:{a}" for a in names.get_values_for_type(x509.IPAddress)
    }


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _days_left(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_first_run_makes_a_ca_and_a_signed_certificate_per_host(first_run: tuple[Setup, Run]) -> None:
    setup, run = first_run
    assert run.install_changed() == {"app-a": True, "app-b": True}

    ca = setup.cert("ca.crt")
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    assert 3649 < _days_left(ca) <= 3650

    expected = {
        "app-a": {"DNS:app-a", "DNS:localhost", "IP:127.0.0.1", "IP:::1", "IP:10.9.8.7"},
        "app-b": {
            "DNS:app-b",
            "DNS:localhost",
            "IP:127.0.0.1",
            "IP:::1",
            "DNS:b.example.test",
            "DNS:alias.example.test",
            "IP:192.0.2.5",
        },
    }
    for host, sans in expected.items():
        leaf = setup.cert(f"hosts/{host}.crt")
        leaf.verify_directly_issued_by(ca)
        assert _sans(leaf) == sans, host
        assert _eku(leaf) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert 364 < _days_left(leaf) <= 365
        assert _mode(setup.pki_dir / f"hosts/{host}.key") == 0o600

        installed = setup.tls_root / host
        assert (installed / "ca.crt").read_bytes() == (setup.pki_dir / "ca.crt").read_bytes()
        assert (installed / "tls.crt").read_bytes() == (setup.pki_dir / f"hosts/{host}.crt").read_bytes()
        assert (installed / "tls.key").read_bytes() == (setup.pki_dir / f"hosts/{host}.key").read_bytes()
        assert {p.name: _mode(p) for p in installed.iterdir()} == {"ca.crt": 0o644, "tls.crt": 0o644, "tls.key": 0o600}
        assert _mode(installed) == 0o750
        # The leaf key is PKCS#8 (Kafka's PEM keystore reads only that).
        assert (installed / "tls.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")

    client = setup.cert("clients/controller.crt")
    client.verify_directly_issued_by(ca)
    assert _eku(client) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert _sans(client) == {"DNS:controller"}
    assert _mode(setup.pki_dir / "ca.key") == 0o600
    assert _mode(setup.pki_dir / "clients/controller.key") == 0o600
    assert {_mode(setup.pki_dir / d) for d in ("", "hosts", "clients")} == {0o700}


def test_a_second_run_changes_nothing(issued: Setup) -> None:
    setup = issued
    before = {p: p.read_bytes() for p in setup.root.rglob("*") if p.is_file() and "tmp" not in p.parts}
    run = setup.run()
    assert run.changed() == {"app-a": 0, "app-b": 0}, run.proc.stdout[-4000:]
    assert run.install_changed() == {"app-a": False, "app-b": False}
    after = {p: p.read_bytes() for p in before}
    assert after == before


def test_a_certificate_near_its_expiry_is_reissued_with_the_same_key(setup: Setup) -> None:
    setup.run({"pki_cert_days": 10, "pki_renew_days": 5})
    old = setup.cert("hosts/app-a.crt")
    old_key = (setup.pki_dir / "hosts/app-a.key").read_bytes()
    assert 9 < _days_left(old) <= 10

    # Within the default 30-day renewal window now: re-issued for pki_cert_days (365).
    run = setup.run()
    new = setup.cert("hosts/app-a.crt")
    assert new.serial_number != old.serial_number
    assert 364 < _days_left(new) <= 365
    assert (setup.pki_dir / "hosts/app-a.key").read_bytes() == old_key
    assert run.install_changed() == {"app-a": True, "app-b": True}
    assert (setup.tls_root / "app-a/tls.crt").read_bytes() == (setup.pki_dir / "hosts/app-a.crt").read_bytes()


def test_changed_names_reissue_only_that_hosts_certificate(issued: Setup) -> None:
    setup = issued
    old = {h: setup.cert(f"hosts/{h}.crt").serial_number for h in HOSTS}
    hosts = {**HOSTS, "app-a": {**HOSTS["app-a"], "pki_extra_sans": ["app-a.example.test"]}}
    run = setup.run(hosts=hosts)
    assert setup.cert("hosts/app-a.crt").serial_number != old["app-a"]
    assert "DNS:app-a.example.test" in _sans(setup.cert("hosts/app-a.crt"))
    assert setup.cert("hosts/app-b.crt").serial_number == old["app-b"]
    assert run.install_changed() == {"app-a": True, "app-b": False}


def test_force_reissues_keys_and_certificates_but_keeps_the_ca(issued: Setup) -> None:
    setup = issued
    files = ("ca.crt", "ca.key", "hosts/app-a.key", "hosts/app-a.crt", "clients/controller.key")
    old = {f: (setup.pki_dir / f).read_bytes() for f in files}
    run = setup.run({"pki_force": True}, "-vvv", "--diff")
    new = {f: (setup.pki_dir / f).read_bytes() for f in files}
    assert new["ca.crt"] == old["ca.crt"] and new["ca.key"] == old["ca.key"]
    for f in files[2:]:
        assert new[f] != old[f], f
    setup.cert("hosts/app-a.crt").verify_directly_issued_by(setup.cert("ca.crt"))
    assert run.install_changed() == {"app-a": True, "app-b": True}
    _assert_no_private_key_in(run, setup)


def test_a_new_ca_reissues_every_certificate(issued: Setup) -> None:
    setup = issued
    for name in ("ca.crt", "ca.key"):  # what docs/security.md says to move away to revoke
        (setup.pki_dir / name).unlink()
    setup.run()
    ca = setup.cert("ca.crt")
    for leaf in ("hosts/app-a.crt", "hosts/app-b.crt", "clients/controller.crt"):
        setup.cert(leaf).verify_directly_issued_by(ca)


def _secrets(key_file: Path) -> set[str]:
    """Forms of a private key that must never be printed: its PEM lines that hold the private scalar
    (the first two of a P-256 PKCS#8 key; the third holds only the public point, which the
    certificates show anyway) and the scalar in hex and decimal."""
    pem = key_file.read_text()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value
    return {body[0][48:], body[1], f"{scalar:064x}", f"{scalar:064X}", str(scalar)}


def _assert_no_private_key_in(run: Run, setup: Setup) -> None:
    keys = sorted(setup.pki_dir.rglob("*.key"))
    assert len(keys) == 4  # the CA, two hosts, the controller client
    assert "PRIVATE KEY" not in run.output
    leaked = [(key.name, secret) for key in keys for secret in _secrets(key) if secret in run.output]
    assert not leaked


def test_no_private_key_in_the_output_with_vvv_and_diff(first_run: tuple[Setup, Run]) -> None:
    setup, run = first_run
    assert "-vvv" in run.proc.args and "--diff" in run.proc.args
    _assert_no_private_key_in(run, setup)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"pki_dir": "relative/pki"}, "must be an absolute path outside the repository"),
        ({"pki_dir": str(REPO / "var/pki")}, "must be an absolute path outside the repository"),
        ({"pki_renew_days": 400}, "pki_renew_days (400) < pki_cert_days"),
        ({"pki_clients": ["ctl/../x"]}, "client names letters"),
    ],
)
def test_bad_input_stops_the_run(setup: Setup, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError) as failed:
        setup.run(extra)
    assert message in str(failed.value)
    assert not (setup.pki_dir / "ca.key").exists()


# --- the sumflow role ----------------------------------------------------------------------------------


def _sumflow(setup: Setup, extra: dict[str, Any] | None = None) -> tuple[Run, dict[str, tuple[bool, list[str]]]]:
    """Run SUMFLOW_PLAYBOOK: per host (restart mark, the gate's adder arguments)."""
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    local = {
        "sumflow_user": user,
        "sumflow_group": group,
        "sumflow_tls_dir": "{{ tls_root }}/{{ inventory_hostname }}/tls",
    }
    run = setup.run({**local, **(extra or {})}, play=SUMFLOW_PLAYBOOK)
    found = re.findall(r'ok: \[(\S+)\] =>.*?"msg": "restart_adder=(True|False) gate=(\[.*?\])"', run.proc.stdout, re.S)
    return run, {h: (mark == "True", json.loads(gate.replace('\\"', '"'))) for h, mark, gate in found}


def _env(setup: Setup, host: str) -> dict[str, str]:
    lines = (setup.tls_root / f"{host}.adder.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_sumflow_installs_the_tls_files_for_its_user_and_serves_tls(setup: Setup) -> None:
    _, seen = _sumflow(setup)
    tls = setup.tls_root / "app-a" / "tls"
    assert {p.name: _mode(p) for p in tls.iterdir()} == {"ca.crt": 0o644, "tls.crt": 0o644, "tls.key": 0o600}
    assert (tls / "tls.key").stat().st_uid == os.getuid()  # sumflow_user: the user the units run as
    env = _env(setup, "app-a")
    assert env["SUMFLOW_GRPC_TLS_CERT"] == f"{tls}/tls.crt"
    assert env["SUMFLOW_GRPC_TLS_KEY"] == f"{tls}/tls.key"
    assert "SUMFLOW_GRPC_TLS_CLIENT_CA" not in env
    # The gate calls the TLS adder with the CA, on a name of its certificate (127.0.0.1).
    mark, gate = seen["app-a"]
    assert gate[-4:] == ["--adder", "127.0.0.1:50051", "--ca", f"{tls}/ca.crt"]
    assert "IP:127.0.0.1" in _sans(setup.cert("hosts/app-a.crt"))
    # First install: the files changed, so the adder is marked (the run phase restarts it only if it
    # was already running).
    assert mark

    again, seen = _sumflow(setup)
    assert again.changed() == {"app-a": 0, "app-b": 0}
    assert seen["app-a"][0] is False

    _, seen = _sumflow(setup, {"pki_force": True})
    assert {h: mark for h, (mark, _) in seen.items()} == {"app-a": True, "app-b": True}


def test_sumflow_mutual_tls_and_plaintext_opt_out(setup: Setup) -> None:
    _, seen = _sumflow(setup, {"sumflow_grpc_mtls": True})
    tls = setup.tls_root / "app-b" / "tls"
    assert _env(setup, "app-b")["SUMFLOW_GRPC_TLS_CLIENT_CA"] == f"{tls}/ca.crt"
    assert seen["app-b"][1][-8:] == [
        "--adder",
        "127.0.0.1:50051",
        "--ca",
        f"{tls}/ca.crt",
        "--cert",
        f"{tls}/tls.crt",
        "--key",
        f"{tls}/tls.key",
    ]

    _, seen = _sumflow(setup, {"sumflow_tls_enabled": False})
    assert not any(key.startswith("SUMFLOW_GRPC_TLS_") for key in _env(setup, "app-b"))
    assert seen["app-b"][1][-2:] == ["--adder", "127.0.0.1:50051"]
