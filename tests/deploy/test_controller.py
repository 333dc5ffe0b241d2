"""The Ansible controller's contract: which collections it needs (collections/requirements.yml), one
minimum ansible-core for every role, and SSH host keys checked for real inventories.

Collections are found the way ansible resolves them: every `namespace.collection.name` written in
roles/, playbooks/, molecule/ and inventory/ that names an installed collection, plus what the
collection roles we call use themselves and what their manifests declare. The playbooks are then
syntax-checked by the real ansible-playbook with only the pinned collections on its path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
REQUIREMENTS = REPO / "collections" / "requirements.yml"
SCANNED = ("roles", "playbooks", "molecule", "inventory")
TEXT_SUFFIXES = {".yml", ".yaml", ".j2", ".py", ".cfg", ".ini", ""}
FQCN = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\b")


def _bundle_root() -> Path:
    import ansible_collections

    (root,) = {Path(p) for p in ansible_collections.__path__ if (Path(p) / "ansible").is_dir()}
    return root


BUNDLE = _bundle_root()


def _installed(collection: str) -> Path | None:
    path = BUNDLE.joinpath(*collection.split("."))
    return path if (path / "MANIFEST.json").is_file() else None


def _manifest(collection: str) -> dict:
    path = _installed(collection)
    assert path is not None, f"{collection} is not installed"
    return json.loads((path / "MANIFEST.json").read_text())["collection_info"]


def _references(root: Path) -> set[tuple[str, str, str]]:
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and ".molecule-state" not in path.parts:
            found.update(FQCN.findall(path.read_text(errors="replace")))
    return found


def collections_used() -> set[str]:
    """Collections named in this repo, plus those needed by the collection roles it calls."""
    direct = set()
    for top in SCANNED:
        direct.update(_references(REPO / top))
    used = set()
    pending = []
    for ns, name, leaf in direct:
        collection = f"{ns}.{name}"
        if collection == "ansible.builtin" or _installed(collection) is None:
            continue
        used.add(collection)
        role = _installed(collection) / "roles" / leaf  # type: ignore[operator]
        if role.is_dir():
            pending.append(role)
    for role in pending:
        for ns, name, _ in _references(role):
            collection = f"{ns}.{name}"
            if collection != "ansible.builtin" and _installed(collection) is not None:
                used.add(collection)
    closure = set()
    stack = sorted(used)
    while stack:
        collection = stack.pop()
        if collection in closure:
            continue
        closure.add(collection)
        stack.extend(_manifest(collection).get("dependencies") or {})
    return closure


def pinned() -> dict[str, str]:
    entries = yaml.safe_load(REQUIREMENTS.read_text())["collections"]
    return {entry["name"]: entry["version"] for entry in entries}


def test_requirements_pin_exactly_the_collections_used():
    assert set(pinned()) == collections_used()


def test_pins_are_exact_and_match_the_locked_ansible_bundle():
    for collection, version in pinned().items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{collection}: {version} is not an exact version"
        assert _manifest(collection)["version"] == version, collection


def _syntax_check(collections: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tree = tmp_path / "ansible_collections"
    for collection in collections:
        ns, name = collection.split(".")
        (tree / ns).mkdir(parents=True, exist_ok=True)
        (tree / ns / name).symlink_to(_installed(collection))  # type: ignore[arg-type]
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(tmp_path),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example", "playbooks/site.yml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_playbooks_resolve_with_ansible_core_and_only_the_pinned_collections(tmp_path):
    proc = _syntax_check(pinned(), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_missing_pinned_collection_breaks_the_syntax_check(tmp_path):
    without_grafana = {c: v for c, v in pinned().items() if c != "grafana.grafana"}
    proc = _syntax_check(without_grafana, tmp_path)
    assert proc.returncode != 0
    assert "grafana.grafana" in proc.stdout + proc.stderr


def test_one_min_ansible_version_met_by_the_locked_ansible_core():
    versions = {
        yaml.safe_load(meta.read_text())["galaxy_info"]["min_ansible_version"]
        for meta in (REPO / "roles").glob("*/meta/main.yml")
    }
    assert len(versions) == 1, versions
    (minimum,) = versions
    from ansible.release import __version__ as core

    assert tuple(map(int, core.split(".")[:2])) >= tuple(map(int, minimum.split(".")))


def _config(inventory: str) -> dict[str, object]:
    out = subprocess.run(
        [str(VENV_BIN / "ansible-config"), "dump", "--format", "json"],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_INVENTORY": inventory},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {entry["name"]: entry["value"] for entry in json.loads(out) if "name" in entry}


def _hostvars(inventory: str) -> dict[str, dict[str, object]]:
    out = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", inventory, "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["_meta"]["hostvars"]


def test_host_keys_are_checked_for_real_inventories():
    assert _config("inventory/example")["HOST_KEY_CHECKING"] is True
    for host, hostvars in _hostvars("inventory/example").items():
        args = " ".join(str(hostvars.get(k, "")) for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args"))
        assert "StrictHostKeyChecking=no" not in args, host


@pytest.mark.parametrize("host", ["kafka1", "app1", "mon1"])
def test_only_the_throwaway_vagrant_hosts_skip_host_keys(host):
    hostvars = _hostvars("inventory/vagrant")[host]
    assert "StrictHostKeyChecking=no" in str(hostvars["ansible_ssh_common_args"])
