"""The hosts' wheelhouse (roles/sumflow/files/build-wheelhouse.sh) is built from the hash-locked runtime
file and installs, as roles/sumflow/tasks/install.yml runs it, with --no-index --require-hashes.

The real script builds a wheelhouse for CPython 3.11 on x86_64 (the Debian 12 hosts) from
requirements/runtime.txt; a fresh venv then installs it with the role's own pip arguments, and what
it holds is compared with the lock. A changed wheel and a dependency missing from the lock are refused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "sumflow" / "files" / "build-wheelhouse.sh"
LOCK = REPO / "requirements" / "runtime.txt"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    return {canonical(name): version for name, version in PIN.findall(LOCK.read_text())}


def sumflow_version() -> str:
    match = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (REPO / "app" / "pyproject.toml").read_text())
    assert match
    return match.group(1)


def role_pip_args() -> list[str]:
    """The pip arguments of the role's install task, with the host paths left as placeholders."""
    tasks = yaml.safe_load((REPO / "roles" / "sumflow" / "tasks" / "install.yml").read_text())
    (block,) = [t for t in tasks if "block" in t]
    (install,) = [t for t in block["block"] if t["name"].startswith("Install the release")]
    return install["ansible.builtin.command"]["argv"][1:]


def host_install(wheelhouse: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """Install `wheelhouse` into a new venv at `target` with the role's own pip arguments."""
    venv.create(target, with_pip=True)
    root = "{{ sumflow_install_root }}/wheelhouses/{{ sumflow_release_id }}"
    args = [a.replace(root, str(wheelhouse)) for a in role_pip_args()]
    assert not any("{{" in a for a in args), args
    return subprocess.run([str(target / "bin" / "pip"), *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wh") / "release-cp311-x86_64"
    subprocess.run(
        [str(SCRIPT), str(out), str(REPO / "app"), "3.11", "x86_64", str(LOCK)],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(out.parent)},
        check=True,
        timeout=600,
    )
    return out


def test_role_installs_with_require_hashes_and_no_index():
    args = role_pip_args()
    assert "--require-hashes" in args and "--no-index" in args
    assert any(a.startswith("--requirement=") and a.endswith("/requirements.txt") for a in args)


def test_wheelhouse_holds_exactly_the_locked_wheels(wheelhouse):
    found = {}
    for wheel in wheelhouse.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        found[canonical(name)] = version
    assert found == {**locked(), "sumflow": sumflow_version()}
    assert (wheelhouse / ".complete").exists()


def test_host_install_is_exactly_the_lock(wheelhouse, tmp_path):
    proc = host_install(wheelhouse, tmp_path / "venv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip = str(tmp_path / "venv" / "bin" / "pip")
    freeze = subprocess.run(
        [pip, "list", "--format=freeze", "--exclude", "pip", "--exclude", "setuptools"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {canonical(name): version for name, version in PIN.findall(freeze)}
    assert installed == {**locked(), "sumflow": sumflow_version()}


def test_a_changed_wheel_is_refused(wheelhouse, tmp_path):
    copy = tmp_path / "wh"
    shutil.copytree(wheelhouse, copy)
    (victim,) = copy.glob("waitress-*.whl")
    with victim.open("ab") as f:
        f.write(b"\0")
    proc = host_install(copy, tmp_path / "venv")
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stderr


def test_a_dependency_missing_from_the_lock_is_refused(wheelhouse, tmp_path):
    copy = tmp_path / "wh"
    shutil.copytree(wheelhouse, copy)
    requirements = copy / "requirements.txt"
    text = requirements.read_text()
    without = re.sub(r"(?ms)^typing-extensions==.*?(?=^\S)", "", text)
    assert without != text
    requirements.write_text(without)
    proc = host_install(copy, tmp_path / "venv")
    assert proc.returncode != 0
    assert "In --require-hashes mode, all requirements must have their versions pinned" in proc.stderr
    assert "typing-extensions" in proc.stderr.lower().replace("_", "-")
