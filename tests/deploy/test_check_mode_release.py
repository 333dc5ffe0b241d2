"""`ansible-playbook --check --diff` previewing a release that no host has yet.

playbooks/app.yml runs in check mode with the install phase (`sumflow_install`) against this machine
as a local host whose install root, config and state paths are temporary directories: the wheelhouse
is built on the controller (into a temporary cache: the only thing written), the copy to the host is
shown as a change, and nothing is installed. Before the build ran in check mode too, the copy failed
on its missing source.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, run_playbook

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_check_diff_of_a_new_release_builds_the_wheelhouse_and_previews_the_copy(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[adder]\napp-check\n[accumulator]\napp-check\n")
    host_root = tmp_path / "host"
    extra = {
        **LOCAL_CONNECTION,
        "sumflow_controller_cache": str(tmp_path / "controller-cache"),
        "sumflow_install_root": str(host_root / "opt"),
        "sumflow_config_dir": str(host_root / "etc"),
        "sumflow_state_root": str(host_root / "var"),
        "sumflow_kafka_bootstrap": "127.0.0.1:9092",
    }
    proc = run_playbook(
        inventory,
        REPO / "playbooks/app.yml",
        extra,
        "--check",
        "--diff",
        "--tags",
        "sumflow_install",
        tmp=tmp_path,
        timeout=900,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-2000:]
    built = list((tmp_path / "controller-cache" / "wheelhouse").glob("*/.complete"))
    assert len(built) == 1, out[-3000:]
    copy = out.split("TASK [sumflow : Copy the wheelhouse to the host]", 1)[1].split("TASK [", 1)[0]
    assert "changed: [app-check]" in copy, copy
    # The rest of the phase is previewed too, down to the switch of the current release.
    assert "TASK [sumflow : Point the current symlink at the release]" in out
    # Check mode changed nothing on the host.
    assert not host_root.exists() or not any(host_root.rglob("*")), sorted(host_root.rglob("*"))
