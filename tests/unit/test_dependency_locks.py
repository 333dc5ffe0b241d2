"""The hash-locked dependency files in requirements/ agree with their inputs and with each other:
every locked file has hashes, every runtime dependency of app/pyproject.toml is pinned inside its
range, every exact pin of an .in file is the locked version, and packages shared between the locks
(all installed into one venv by `make venv`) have one version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
REQ = REPO / "requirements"
LOCKS = ("tools", "build", "runtime", "test", "controller")
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.MULTILINE)


def locked(name: str) -> dict[str, tuple[str, int]]:
    """package -> (version, number of hashes) of requirements/<name>.txt."""
    return {
        canonicalize_name(pkg): (version, hashes.count("--hash="))
        for pkg, version, hashes in ENTRY.findall((REQ / f"{name}.txt").read_text())
    }


@pytest.mark.parametrize("name", LOCKS)
def test_every_locked_package_has_hashes(name):
    text = (REQ / f"{name}.txt").read_text()
    pins = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    entries = locked(name)
    assert len(entries) == len(pins) > 0
    assert all(count > 0 for _, count in entries.values()), entries


def test_runtime_lock_pins_every_pyproject_dependency_within_its_range():
    project = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())["project"]
    runtime = locked("runtime")
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in runtime, f"{req.name} is not in requirements/runtime.txt: run make lock"
        assert req.specifier.contains(runtime[name][0], prereleases=True), f"{spec} vs {runtime[name][0]}"


@pytest.mark.parametrize("name", ["tools", "test", "controller"])
def test_exact_pins_of_the_inputs_are_the_locked_versions(name):
    lock = locked(name)
    for line in (REQ / f"{name}.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if pinned:
            assert lock[canonicalize_name(req.name)][0] == pinned[0], line


def test_packages_shared_between_locks_have_one_version():
    versions: dict[str, dict[str, str]] = {}
    for name in LOCKS[1:]:  # the lock tool lives in its own venv
        for pkg, (version, _) in locked(name).items():
            versions.setdefault(pkg, {})[name] = version
    split = {pkg: where for pkg, where in versions.items() if len(set(where.values())) > 1}
    assert split == {}
