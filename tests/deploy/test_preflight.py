"""Every role's tasks/preflight.yml, run through the real site.yml with only the `<role>_preflight` tags
in --check mode: the real inventories pass, and each kind of bad input stops the run with its message.

The hosts are this machine (ansible_connection=local, no become), as in test_render_monitoring.py:
the preflight checks only template, read facts and run lookups, so nothing is installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, run_playbook

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks/main.yml").exists())
# release_artifact runs inside kafka, prometheus and node_exporter (include_role), exporter_web inside
# prometheus and node_exporter, haproxy inside sumflow: their checks are tagged `always` and run with
# their callers' install, configure or run phase, not with the preflight tags.
INCLUDED_ROLES = ("release_artifact", "exporter_web", "haproxy")
PREFLIGHT_TAGS = ",".join(f"{role}_preflight" for role in ROLES if role not in INCLUDED_ROLES)
# Roles whose play runs only on an optional inventory group: {role: group}. inventory/example has a
# balancer host, inventory/vagrant (the Vagrantfile's VMs) none.
OPTIONAL_GROUP_ROLES = {"grpc_balancer": "balancer"}
INVENTORY_GROUPS_PRESENT = {"example": {"balancer"}, "vagrant": set()}


def _site_preflight(
    inventory: Path, tmp_path: Path, extra: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    local = {**LOCAL_CONNECTION, "sumflow_controller_cache": str(tmp_path / "controller-cache")}
    return run_playbook(
        inventory,
        REPO / "playbooks/site.yml",
        {**local, **extra},
        "--check",
        "--tags",
        PREFLIGHT_TAGS,
        *args,
        tmp=tmp_path,
        timeout=900,
    )


def test_every_role_has_a_preflight_run_first() -> None:
    for role in ROLES:
        assert (REPO / "roles" / role / "tasks/preflight.yml").exists(), role
        (first, *_) = yaml.safe_load((REPO / "roles" / role / "tasks/main.yml").read_text())
        # kafka publishes its node id first (tasks/node_fact.yml); the id check reads it
        if first.get("ansible.builtin.import_tasks") == "node_fact.yml":
            (_, first, *_) = yaml.safe_load((REPO / "roles" / role / "tasks/main.yml").read_text())
        assert first["ansible.builtin.import_tasks"] == "preflight.yml", role
        assert f"{role}_preflight" in first["tags"], role


@pytest.mark.parametrize("inventory", ["example", "vagrant"])
def test_the_real_inventories_pass_every_preflight(inventory: str, tmp_path: Path) -> None:
    proc = _site_preflight(REPO / "inventory" / inventory, tmp_path, {})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    for role in ROLES:
        if role in INCLUDED_ROLES:
            continue
        runs = OPTIONAL_GROUP_ROLES.get(role, "all") in INVENTORY_GROUPS_PRESENT[inventory] | {"all"}
        assert (f"TASK [{role} : Check " in proc.stdout) == runs, role
    # Only checks ran: nothing reported a change in check mode.
    assert "changed=0" in proc.stdout and "changed=1" not in proc.stdout


BAD_INPUTS = {
    "kafka heap": ({"kafka_heap_size": "1gb"}, "kafka", "kafka_heap_size must be a JVM size"),
    "kafka ids": ({"kafka_node_id": 1}, "kafka", "must be positive and unique"),
    "kafka min.insync": ({"kafka_min_insync_replicas": 4}, "kafka", "min.insync.replicas"),
    "kafka password": ({"kafka_admin_password": 'a-long-password-with-a-"quote'}, "kafka", "passwords at least 16"),
    "kafka acl": (
        {
            "kafka_acls": [
                {"principal": "sumflow-adder", "resource_type": "topic", "name": "t", "operations": ["Write"]}
            ]
        },
        "kafka",
        "kafka_acls: principal User:<name>",
    ),
    "kafka acl pattern": (
        {
            "kafka_acls": [
                {
                    "principal": "User:sumflow-accumulator",
                    "resource_type": "group",
                    "name": "g-",
                    "pattern_type": "prefix",
                    "operations": ["Read"],
                }
            ]
        },
        "kafka",
        "pattern_type literal or",
    ),
    "sumflow ports": ({"sumflow_http_port": 50051}, "adder", "must be distinct ports"),
    "sumflow backend port": ({"sumflow_http_backend_port": 8080}, "accumulator", "must be distinct ports"),
    "sumflow adder metrics backend port": (
        {"sumflow_adder_metrics_backend_port": 50051},
        "adder",
        "must be distinct ports",
    ),
    "sumflow adder metrics address behind HAProxy": (
        {"sumflow_adder_env": {"SUMFLOW_METRICS_LISTEN": "0.0.0.0:9464"}},
        "adder",
        "SUMFLOW_METRICS_LISTEN (not in sumflow_adder_env)",
    ),
    "sumflow consumer group": (
        {"sumflow_consumer_group": "sumflow-accumulator"},
        "accumulator",
        "must start with sumflow_consumer_group_prefix",
    ),
    "sumflow watchdog": ({"sumflow_accumulator_watchdog_seconds": 0}, "accumulator", "must be whole seconds >= 1"),
    "sumflow paths": ({"sumflow_state_root": "var/lib/sumflow"}, "adder", "must be absolute paths"),
    "sumflow stop timeout": ({"sumflow_stop_timeout": 20}, "adder", "must exceed sumflow_drain_seconds"),
    "sumflow mtls": (
        {"sumflow_tls_enabled": False, "sumflow_grpc_mtls": True},
        "adder",
        "sumflow_grpc_mtls needs sumflow_tls_enabled",
    ),
    "balancer check slower than the drain": (
        {"sumflow_drain_seconds": 1},
        "balancer",
        "must not exceed the adders' drain of 1 s (sumflow_drain_seconds)",
    ),
    "pki renewal": ({"pki_renew_days": 400}, "adder", "pki_renew_days (400) < pki_cert_days (365)"),
    "prometheus retention": (
        {"prometheus_retention_time": "15days"},
        "monitoring",
        "prometheus_retention_time must be",
    ),
    # The firewall (earlier in site.yml) checks the same port in its rules: off here, so that the
    # node_exporter role's own check is the one that speaks.
    "node_exporter port": (
        {"node_exporter_port": 0, "firewall_enabled": False},
        "monitoring",
        "node_exporter: port 1-65535",
    ),
    "firewall rule port": ({"node_exporter_port": 0}, "monitoring", "firewall rule node_exporter: name a lower-case"),
    "common limits": ({"common_nofile_limit": 100}, "monitoring", "common_nofile_limit >= 1024"),
    "tempo retention": (
        {"grafana_stack_tempo_retention_period": "7d"},
        "monitoring",
        "grafana_stack_tempo_retention_period",
    ),
    "grafana version": ({"grafana_stack_grafana_version": "latest"}, "monitoring", "must be a release version"),
    "stack ports": ({"grafana_stack_tempo_otlp_grpc_port": 3100}, "monitoring", "must be 1-65535 and all different"),
    "stack proxy ports": (
        {"grafana_stack_loki_backend_port": 3100},
        "monitoring",
        "must be 1-65535 and all different",
    ),
    "stack users": (
        {"grafana_stack_loki_username": "loki user"},
        "monitoring",
        "named with [A-Za-z0-9._-] (got loki user",
    ),
    "firewall sources": (
        {"firewall_client_sources": ["clients.example.internal"]},
        "adder",
        "firewall sources must be IPv4/IPv6 addresses or CIDRs",
    ),
    "firewall rule": (
        {"firewall_extra_rules": [{"name": "Bad-Name", "port": 70000, "listen_groups": ["adder"], "from_groups": []}]},
        "adder",
        "firewall rule Bad-Name",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stops_the_run_with_its_message(case: str, tmp_path: Path) -> None:
    extra, limit, message = BAD_INPUTS[case]
    proc = _site_preflight(REPO / "inventory/example", tmp_path, extra, "--limit", limit)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert message in proc.stdout, proc.stdout[-6000:]
    assert "a-long-password-with" not in proc.stdout


def test_two_kafka_nodes_are_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    kafka = {"kafka-1": {"kafka_node_id": 1}, "kafka-2": {"kafka_node_id": 2}}
    groups = {
        "kafka": {"hosts": kafka},
        "adder": {"hosts": {}},
        "accumulator": {"hosts": {}},
        "monitoring": {"hosts": {}},
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
    proc = _site_preflight(inventory, tmp_path, {}, "--limit", "kafka")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "KRaft needs 1 node or 3 and more" in proc.stdout, proc.stdout[-6000:]
