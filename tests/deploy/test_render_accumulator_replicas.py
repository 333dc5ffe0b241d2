"""Two accumulator replicas as roles/sumflow configures them, and the Kafka ACL roles/kafka grants them.

The real ansible-playbook renders, for an inventory shaped like inventory/example (with its group_vars)
whose `accumulator` group has two hosts, each host's EnvironmentFile with the sumflow role's own
"Render the environment files" task (its src, loop and the role's defaults, vars and templates; only
the destination moved to a temporary directory), after the role's own preflight checks. The kafka
role's `kafka_acls` are rendered from its defaults on the Kafka host.

What a replica deployment must show: the two hosts' accumulator.env differ only in what is theirs
(SUMFLOW_INSTANCE, SUMFLOW_CONSUMER_GROUP: one group per replica for lag, SUMFLOW_DLQ_WRITER: the
first host of the group alone writes the DLQ), and the accumulator's user is allowed each rendered
group by one PREFIXED group ACL, and no other group ACL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, role_with_real_parts, run_playbook

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("app-1.example.internal", "app-2.example.internal")
KAFKA_HOST = "kafka-1.example.internal"


def _env_task() -> dict[str, Any]:
    """roles/sumflow/tasks/configure.yml's env file task, writing under render_dir/<host>/."""
    tasks = yaml.safe_load((REPO / "roles/sumflow/tasks/configure.yml").read_text())
    (task,) = [t for t in tasks if t.get("name") == "Render the environment files"]
    template = task["ansible.builtin.template"]
    return {
        "name": task["name"],
        "ansible.builtin.template": {
            "src": template["src"],
            "dest": "{{ render_dir }}/{{ inventory_hostname }}/" + Path(template["dest"]).name,
            "mode": "0600",
        },
        "loop": task["loop"],
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("replicas")
    inventory = root / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory/example/group_vars", target_is_directory=True)
    app_hosts = {host: {} for host in HOSTS}
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "kafka": {"hosts": {KAFKA_HOST: {}}},
                        "adder": {"hosts": app_hosts},
                        "accumulator": {"hosts": app_hosts},
                        "monitoring": {"hosts": {"mon-1.example.internal": {}}},
                    }
                }
            }
        )
    )
    out = root / "out"
    mkdir = {
        "name": "out",
        "ansible.builtin.file": {"path": "{{ render_dir }}/{{ inventory_hostname }}", "state": "directory"},
    }
    preflight = {"name": "the role's preflight", "ansible.builtin.include_tasks": "preflight.yml"}
    sumflow = role_with_real_parts(
        root, "render_sumflow", REPO / "roles/sumflow", [preflight, mkdir, _env_task()], task_files=("preflight.yml",)
    ).name
    acls = {
        "name": "the ACLs",
        "ansible.builtin.copy": {"content": "{{ kafka_acls | to_json }}", "dest": "{{ render_dir }}/kafka_acls.json"},
    }
    kafka = role_with_real_parts(root, "render_kafka", REPO / "roles/kafka", [acls]).name
    playbook = root / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {"hosts": "adder:accumulator", "gather_facts": False, "roles": [sumflow]},
                {"hosts": "kafka", "gather_facts": False, "roles": [kafka]},
            ],
            sort_keys=False,
        )
    )
    extra = {
        "render_dir": str(out),
        "sumflow_controller_cache": str(root / "controller-cache"),
        "sumflow_app_source": str(REPO / "app"),
        **LOCAL_CONNECTION,
    }
    proc = run_playbook(inventory / "hosts.yml", playbook, extra, tmp=root, roles_path=root / "roles")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]

    def env_file(host: str) -> dict[str, str]:
        lines = (out / host / "accumulator.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    return {"env": {host: env_file(host) for host in HOSTS}, "acls": json.loads((out / "kafka_acls.json").read_text())}


def test_two_replicas_differ_only_in_instance_group_and_dlq_writer(rendered: dict[str, Any]) -> None:
    first, second = (rendered["env"][host] for host in HOSTS)
    assert first.keys() == second.keys()
    differ = {name: (first[name], second[name]) for name in first if first[name] != second[name]}
    assert differ == {
        "SUMFLOW_INSTANCE": HOSTS,
        "SUMFLOW_CONSUMER_GROUP": tuple(f"sumflow-accumulator-{host}" for host in HOSTS),
        "SUMFLOW_DLQ_WRITER": ("true", "false"),
    }
    # the shared settings a replica must agree on
    for name in ("SUMFLOW_TOPIC", "SUMFLOW_DLQ_TOPIC", "SUMFLOW_KAFKA_SASL_USERNAME"):
        assert first[name] == second[name]


def test_the_kafka_acl_allows_every_replica_group_by_prefix_and_nothing_else(rendered: dict[str, Any]) -> None:
    groups = [
        acl
        for acl in rendered["acls"]
        if acl["principal"] == "User:sumflow-accumulator" and acl["resource_type"] == "group"
    ]
    assert groups == [
        {
            "principal": "User:sumflow-accumulator",
            "resource_type": "group",
            "name": "sumflow-accumulator-",
            "pattern_type": "prefixed",
            "operations": ["Read"],
        }
    ]
    for env in rendered["env"].values():
        assert env["SUMFLOW_CONSUMER_GROUP"].startswith(groups[0]["name"])
        assert env["SUMFLOW_KAFKA_SASL_USERNAME"] == "sumflow-accumulator"
