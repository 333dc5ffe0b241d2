"""The nftables ruleset roles/firewall writes, rendered by the real ansible-playbook for every inventory
it meets (inventory/vagrant with 1 and 3 Kafka nodes, inventory/example, the Molecule scenarios'
inventories), checked by the kernel and held to the port matrix.

Each host's ruleset is rendered by a throwaway role whose defaults, vars and templates ARE the real
role's (same precedence), running the role's own preflight and its template task (with its
`validate: nft -c -f`). Then the file is loaded for real into a fresh network namespace
(`unshare --net`, so this machine's own ruleset is untouched) and read back as JSON; a small evaluator
walks the loaded input chain for a new TCP connection from each candidate source (every inventory
host, the inventory's client and operator networks, a stranger) to each port, and the answer must be
the matrix below.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.ansible_playbook import LOCAL_CONNECTION, run_playbook

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLE = REPO / "roles/firewall"
NFT = shutil.which("nft") or "/usr/sbin/nft"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"

ANY = "any"
CLIENT = "client"
OPERATOR = "operator"
ALL_GROUPS = ("kafka", "adder", "accumulator", "monitoring", "balancer")
STRANGERS = ("203.0.113.7", "2001:db8::7")


@dataclass(frozen=True)
class Port:
    """Who may open a TCP connection to `port` on the hosts of `listen` (groups)."""

    port: int
    listen: tuple[str, ...]
    from_groups: tuple[str, ...]
    extra: tuple[str, ...] = ()
    stack: bool = False  # only when the Grafana stack is deployed


MATRIX = (
    Port(22, ALL_GROUPS, (), (ANY,)),
    Port(9092, ("kafka",), ("kafka", "adder", "accumulator"), (OPERATOR,)),
    Port(9093, ("kafka",), ("kafka",)),
    Port(9404, ("kafka",), ("monitoring",)),
    Port(50051, ("adder",), ("balancer",), (CLIENT,)),
    Port(50050, ("balancer",), (), (CLIENT,)),
    Port(9464, ("adder",), ("monitoring",)),
    Port(8080, ("accumulator",), ("monitoring",), (CLIENT,)),
    Port(9100, ALL_GROUPS, ("monitoring",)),
    Port(9090, ("monitoring",), ("monitoring",), (OPERATOR,)),
    Port(3000, ("monitoring",), ("monitoring",), (OPERATOR,), stack=True),
    Port(3100, ("monitoring",), ALL_GROUPS, stack=True),
    Port(4417, ("monitoring",), ALL_GROUPS, stack=True),
    Port(4418, ("monitoring",), ALL_GROUPS, stack=True),
    Port(3200, ("monitoring",), ("monitoring",), stack=True),
    Port(12345, ALL_GROUPS, ("monitoring",), stack=True),
)
# Ports nothing opens: they must be closed to everyone (8081 and 9465: the accumulator and the adder's
# metrics behind HAProxy; 13100, 13200, 14417, 14418: Loki and Tempo behind the monitoring host's
# HAProxy; all on loopback).
CLOSED_PORTS = (23, 9094, 9095, 9096, 4317, 4318, 5432, 9999, 8081, 9465, 13100, 13200, 14417, 14418)

NSPAWN_PREFIX = "10.242.7"


@dataclass(frozen=True)
class Case:
    inventory: Path
    env: dict[str, str]
    extra_vars_files: tuple[Path, ...]
    client: str | None  # an address inside the inventory's firewall_client_sources
    operator: str | None  # an address inside firewall_operator_sources
    stack: bool


CASES = {
    "vagrant": Case(REPO / "inventory/vagrant", {"KAFKA_NODES": "1"}, (), "192.168.56.1", "192.168.56.1", True),
    "vagrant-3": Case(
        REPO / "inventory/vagrant",
        {"KAFKA_NODES": "3", "SUMFLOW_VAGRANT_NET": "192.168.77"},
        (),
        "192.168.77.1",
        "192.168.77.1",
        True,
    ),
    "example": Case(REPO / "inventory/example", {}, (), "10.0.40.5", "10.0.99.5", True),
    "molecule-default": Case(
        REPO / "molecule/default/inventory",
        {"NSPAWN_PREFIX": NSPAWN_PREFIX},
        (REPO / "molecule/shared/vars/overrides.yml",),
        f"{NSPAWN_PREFIX}.1",
        f"{NSPAWN_PREFIX}.1",
        False,
    ),
    "molecule-firewall": Case(
        REPO / "molecule/firewall/inventory",
        {"NSPAWN_PREFIX": NSPAWN_PREFIX},
        (REPO / "molecule/shared/vars/overrides.yml",),
        None,
        None,
        False,
    ),
}


def _role_template_task() -> dict[str, Any]:
    """The role's own template task (its src and validate command are what the render uses)."""
    tasks = yaml.safe_load((ROLE / "tasks/configure.yml").read_text())
    (task,) = [t for t in tasks if "ansible.builtin.template" in t]
    return dict(task["ansible.builtin.template"])


def _render(case: Case, root: Path) -> dict[str, Any]:
    role = root / "roles/render_firewall"
    for part in ("defaults", "vars", "tasks"):
        (role / part).mkdir(parents=True)
    (role / "defaults/main.yml").symlink_to(ROLE / "defaults/main.yml")
    (role / "vars/main.yml").symlink_to(ROLE / "vars/main.yml")
    (role / "templates").symlink_to(ROLE / "templates", target_is_directory=True)
    template = _role_template_task()
    assert template["validate"] == "nft -c -f %s"
    tasks = [
        {"name": "the role's preflight", "ansible.builtin.include_tasks": str(ROLE / "tasks/preflight.yml")},
        {
            "name": "render the ruleset as the role does",
            "ansible.builtin.template": {
                "src": template["src"],
                "dest": "{{ render_dir }}/{{ inventory_hostname }}.nft",
                "validate": template["validate"],
            },
        },
        {
            "name": "record the host's groups and address",
            "ansible.builtin.copy": {
                "dest": "{{ render_dir }}/{{ inventory_hostname }}.json",
                "content": "{{ {'groups': group_names, 'address': firewall__host_addresses[inventory_hostname]}"
                " | to_json }}",
            },
        },
    ]
    (role / "tasks/main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))
    # The real playbook's play, with the throwaway role.
    (play,) = yaml.safe_load((REPO / "playbooks/firewall.yml").read_text())
    assert play["hosts"] == "all" and [r["role"] for r in play["roles"]] == ["firewall"]
    playbook = root / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [{"name": "render", "hosts": play["hosts"], "gather_facts": False, "roles": ["render_firewall"]}]
        )
    )
    out = root / "out"
    out.mkdir()
    proc = run_playbook(
        case.inventory,
        playbook,
        {"render_dir": str(out), **LOCAL_CONNECTION},
        tmp=root,
        roles_path=root / "roles",
        extra_files=case.extra_vars_files,
        env=case.env,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    hosts = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert hosts, "no host rendered"
    return {"out": out, "hosts": hosts}


def _load_in_netns(ruleset: Path) -> dict[str, Any]:
    """Load the ruleset into a fresh network namespace and read it back as nft JSON."""
    proc = subprocess.run(
        [UNSHARE, "--net", "sh", "-c", f'"{NFT}" -f "$1" && "{NFT}" -j list ruleset', "sh", str(ruleset)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _element(value: Any) -> list[Network]:
    if isinstance(value, str):
        return [ipaddress.ip_network(value)]
    if "prefix" in value:
        return [ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}")]
    if "range" in value:
        low, high = (ipaddress.ip_address(a) for a in value["range"])
        return list(ipaddress.summarize_address_range(low, high))  # type: ignore[arg-type]
    raise AssertionError(f"unexpected set element {value!r}")


class Ruleset:
    """The loaded input chain, evaluated for a new inbound TCP connection."""

    def __init__(self, listing: dict[str, Any]) -> None:
        objects = listing["nftables"]
        self.sets: dict[str, list[Network]] = {}
        for obj in objects:
            if "set" in obj:
                elements = obj["set"].get("elem", [])
                self.sets[obj["set"]["name"]] = [n for e in elements for n in _element(e)]
        chains = [o["chain"] for o in objects if "chain" in o and o["chain"].get("hook") == "input"]
        assert len(chains) == 1, chains
        self.chain = chains[0]
        self.rules = [o["rule"] for o in objects if "rule" in o and o["rule"]["chain"] == self.chain["name"]]

    def _matches(self, match: dict[str, Any], source: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        left, right = match["left"], match["right"]
        assert match["op"] in ("==", "in"), match
        payload = left.get("payload") if isinstance(left, dict) else None
        if payload == {"protocol": "tcp", "field": "dport"}:
            return port in (right["set"] if isinstance(right, dict) else [right])
        if payload and payload["field"] == "saddr":
            if payload["protocol"] != ("ip" if source.version == 4 else "ip6"):
                return False
            if isinstance(right, str) and right.startswith("@"):
                return any(source in net for net in self.sets[right[1:]])
            return any(source in net for net in _element(right))
        # Anything else (iif lo, ct state, ICMP, UDP/DHCP) does not describe a new TCP connection from afar.
        return False

    def accepts(self, source: str, port: int) -> bool:
        address = ipaddress.ip_address(source)
        for rule in self.rules:
            matches = [e["match"] for e in rule["expr"] if "match" in e]
            verdicts = [k for e in rule["expr"] for k in e if k in ("accept", "drop", "reject")]
            if not verdicts or not all(self._matches(m, address, port) for m in matches):
                continue
            return verdicts[0] == "accept"
        return self.chain["policy"] == "accept"


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    case = CASES[request.param]
    result = _render(case, tmp_path_factory.mktemp(f"firewall-{request.param}"))
    return {"case": case, **result}


def test_every_ruleset_passes_the_kernel_and_drops_by_default(rendered: dict[str, Any]) -> None:
    for host in rendered["hosts"]:
        ruleset = Ruleset(_load_in_netns(rendered["out"] / f"{host}.nft"))
        assert ruleset.chain["policy"] == "drop", host
        assert ruleset.chain["table"] == "sumflow_firewall" and ruleset.chain["family"] == "inet", host
        # Nothing but our table: the file never flushes other tables.
        assert "flush ruleset" not in (rendered["out"] / f"{host}.nft").read_text()


def test_each_port_admits_exactly_the_groups_that_use_it(rendered: dict[str, Any]) -> None:
    case: Case = rendered["case"]
    hosts: dict[str, Any] = rendered["hosts"]
    by_group = {g: [h for h, info in hosts.items() if g in info["groups"]] for g in ALL_GROUPS}
    assert all(len(info["address"]) == 1 for info in hosts.values()), hosts
    address = {h: info["address"][0] for h, info in hosts.items()}
    candidates = {**{f"host {h}": a for h, a in address.items()}, **{f"stranger {s}": s for s in STRANGERS}}
    if case.client:
        candidates[f"client {case.client}"] = case.client
    if case.operator:
        candidates[f"operator {case.operator}"] = case.operator
    matrix = [p for p in MATRIX if case.stack or not p.stack]
    checked = 0
    for host, info in hosts.items():
        ruleset = Ruleset(_load_in_netns(rendered["out"] / f"{host}.nft"))
        open_here = {p.port: p for p in matrix if set(p.listen) & set(info["groups"])}
        for port in sorted({p.port for p in MATRIX} | set(CLOSED_PORTS)):
            spec = open_here.get(port)
            allowed: set[str] = set()
            if spec:
                allowed = {address[h] for g in spec.from_groups for h in by_group[g]}
                if CLIENT in spec.extra and case.client:
                    allowed.add(case.client)
                if OPERATOR in spec.extra and case.operator:
                    allowed.add(case.operator)
            for label, source in candidates.items():
                expected = bool(spec) and (ANY in spec.extra or source in allowed)
                assert ruleset.accepts(source, port) == expected, f"{host}:{port} from {label}: expected {expected}"
                checked += 1
    assert checked > 0


def test_the_controllers_ssh_connection_is_always_admitted(tmp_path: Path) -> None:
    """With SSH limited to one network, the address the controller connects from still gets in (SSH_CLIENT)."""
    case = CASES["example"]
    root = tmp_path / "render"
    root.mkdir()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "firewall_ssh_sources": ["10.1.0.0/16"],
                        "firewall__controller": "198.51.100.9 50000 2222",
                    },
                    "children": {"monitoring": {"hosts": {"mon-1": {"ansible_host": "10.0.30.11"}}}},
                }
            }
        )
    )
    result = _render(Case(inventory, {}, (), None, None, case.stack), root)
    ruleset = Ruleset(_load_in_netns(result["out"] / "mon-1.nft"))
    assert ruleset.accepts("198.51.100.9", 2222)
    assert not ruleset.accepts("198.51.100.10", 2222)
    assert ruleset.accepts("10.1.2.3", 22) and not ruleset.accepts("198.51.100.10", 22)
