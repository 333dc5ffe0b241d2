#!/usr/bin/env python3
"""Ansible inventory for the Vagrantfile's VMs (same names, addresses and groups).

KAFKA_NODES (env, 1 or 3, default 1) and SUMFLOW_VAGRANT_NET (env, first three octets, default
192.168.56) must match what `vagrant up` was given; the Vagrantfile computes the same layout.
Run `inventory/vagrant/hosts.py --list` to see it.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("kafka", "adder", "accumulator", "monitoring")


def layout() -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, address, groups) of every VM."""
    kafka_nodes = int(os.environ.get("KAFKA_NODES", "1"))
    if kafka_nodes not in (1, 3):
        sys.exit(f"KAFKA_NODES={kafka_nodes}: expected 1 or 3")
    net = os.environ.get("SUMFLOW_VAGRANT_NET", "192.168.56")
    hosts = [(f"kafka{n}", f"{net}.{10 + n}", ("kafka",)) for n in range(1, kafka_nodes + 1)]
    hosts.append(("app1", f"{net}.21", ("adder", "accumulator")))
    hosts.append(("mon1", f"{net}.31", ("monitoring",)))
    return hosts


def private_key(name: str) -> str:
    keys = sorted(glob.glob(str(ROOT / ".vagrant" / "machines" / name / "*" / "private_key")))
    return keys[0] if keys else str(Path.home() / ".vagrant.d" / "insecure_private_key")


def inventory() -> dict[str, object]:
    groups: dict[str, dict[str, list[str]]] = {g: {"hosts": []} for g in GROUPS}
    hostvars: dict[str, dict[str, object]] = {}
    for name, address, host_groups in layout():
        for group in host_groups:
            groups[group]["hosts"].append(name)
        hostvars[name] = {
            "ansible_host": address,
            "ansible_user": "vagrant",
            "ansible_become": True,
            "ansible_ssh_private_key_file": private_key(name),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "sumflow_node_address": address,
        }
    return {**groups, "all": {"children": list(groups)}, "_meta": {"hostvars": hostvars}}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        print(json.dumps({}))
        return
    print(json.dumps(inventory(), indent=2))


if __name__ == "__main__":
    main()
