"""Every systemd unit our roles ship scores an exposure of at most 2.0 in `systemd-analyze security`.

The units are rendered by the real ansible-playbook from each role's own template task (its src, dest
name and loop vars) with the role's defaults and vars, for the hosts of inventory/vagrant, then scored
offline (`systemd-analyze security --offline=true <file>`: the unit file alone, nothing started). The
booted hosts check the same score online (molecule/shared/tasks/unit_exposure.yml in the default and
node_exporter scenarios' verify).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, run_playbook

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
MAX_EXPOSURE = 2.0

# role -> (hosts it runs on, the tasks file holding its unit template task)
UNIT_ROLES = {
    "kafka": ("kafka", "configure.yml"),
    "sumflow": ("adder:accumulator", "configure.yml"),
    "prometheus": ("monitoring", "install.yml"),
    "node_exporter": ("kafka:adder:accumulator:monitoring", "configure.yml"),
}
EXPECTED_UNITS = {
    "kafka.service",
    "sumflow-adder.service",
    "sumflow-accumulator.service",
    "prometheus.service",
    "node_exporter.service",
}


def _unit_task(role: str, tasks_file: str) -> dict[str, Any]:
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / tasks_file).read_text())
    (task,) = [
        t
        for t in tasks
        if "ansible.builtin.template" in t and str(t["ansible.builtin.template"]["src"]).endswith(".service.j2")
    ]
    template = task["ansible.builtin.template"]
    render = {
        "name": task["name"],
        "ansible.builtin.template": {
            "src": template["src"],
            "dest": "{{ render_dir }}/{{ inventory_hostname }}/" + Path(template["dest"]).name,
        },
    }
    for key in ("loop", "vars"):
        if key in task:
            render[key] = task[key]
    return render


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("units")
    plays = []
    for role, (hosts, tasks_file) in UNIT_ROLES.items():
        real = REPO / "roles" / role
        fake = root / "roles" / f"render_{role}"
        (fake / "tasks").mkdir(parents=True)
        (fake / "defaults").mkdir()
        (fake / "defaults/main.yml").symlink_to(real / "defaults/main.yml")
        if (real / "vars/main.yml").exists():
            (fake / "vars").mkdir()
            (fake / "vars/main.yml").symlink_to(real / "vars/main.yml")
        (fake / "templates").symlink_to(real / "templates", target_is_directory=True)
        mkdir = {
            "name": "out",
            "ansible.builtin.file": {"path": "{{ render_dir }}/{{ inventory_hostname }}", "state": "directory"},
        }
        (fake / "tasks/main.yml").write_text(yaml.safe_dump([mkdir, _unit_task(role, tasks_file)], sort_keys=False))
        plays.append({"name": role, "hosts": hosts, "gather_facts": False, "roles": [fake.name]})
    playbook = root / "render.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    out = root / "out"
    extra = {"render_dir": str(out), "sumflow_controller_cache": str(root / "controller-cache"), **LOCAL_CONNECTION}
    proc = run_playbook(REPO / "inventory/vagrant", playbook, extra, tmp=root, roles_path=root / "roles")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return sorted(out.glob("*/*.service"))


def test_every_unit_we_ship_is_rendered(units: list[Path]) -> None:
    assert {u.name for u in units} == EXPECTED_UNITS


def test_every_unit_scores_at_most_2_0(units: list[Path]) -> None:
    scores = {}
    for unit in units:
        proc = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        assert found, proc.stdout[-2000:] + proc.stderr
        scores[f"{unit.parent.name}/{unit.name}"] = float(found.group(1))
    assert scores and max(scores.values()) <= MAX_EXPOSURE, scores
