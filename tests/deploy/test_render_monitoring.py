"""Render everything the monitoring playbooks hand to Prometheus, Grafana, Loki, Tempo and Alloy, and check it.

Grafana, Loki, Tempo and Alloy cannot be downloaded on this machine, so instead of converging them we
render, with the real ansible-playbook and the real inventories (inventory/example, inventory/vagrant
with their group_vars), every template their grafana.grafana roles write from our configuration
(roles/grafana_stack: its defaults, and the vars its tasks/{loki,tempo,grafana,alloy}.yml hand to each
collection role): grafana.ini, the datasource and dashboard provisioning files (their text is taken
from the collection's own tasks), Loki's and Tempo's config.yml, Alloy's config and env file. The
role's own preflight checks run first. The Prometheus config and units come from roles/prometheus and
roles/node_exporter, and the config is checked with the real `promtool check config`.

Each inventory is rendered as deployed (TLS on: Loki and Tempo on 127.0.0.1 behind HAProxy, whose
configuration tests/deploy/test_monitoring_proxy.py renders and runs, Grafana over HTTPS, every client
with https, the CA and the credentials), and the example inventory once more with
sumflow_tls_enabled false, where everything is plaintext and unauthenticated as before.
"""

from __future__ import annotations

import configparser
import json
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
COLLECTION = Path(
    subprocess.run(
        [sys.executable, "-c", "import ansible_collections.grafana.grafana as m; print(m.__path__[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
)
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# The Vagrant inventory is rendered as `make test-vagrant` runs it here: under QEMU software emulation.
# "example-plaintext" is the example inventory with sumflow_tls_enabled false.
INVENTORIES: dict[str, dict[str, Any]] = {
    "example": {
        "inventory": "example",
        "monitoring": "mon-1.example.internal",
        "kafka_count": 3,
        "loki_retention": "168h",
        "env": {},
        "extra": {},
        "tls": True,
    },
    "vagrant": {
        "inventory": "vagrant",
        "monitoring": "mon1",
        "kafka_count": 1,
        "loki_retention": "72h",
        "env": {"SUMFLOW_LIBVIRT_DRIVER": "qemu"},
        "extra": {},
        "tls": True,
    },
    "example-plaintext": {
        "inventory": "example",
        "monitoring": "mon-1.example.internal",
        "kafka_count": 3,
        "loki_retention": "168h",
        "env": {},
        "extra": {"sumflow_tls_enabled": False},
        "tls": False,
    },
}


def _task_content(tasks_file: Path, task_name: str) -> str:
    """The `content:` of a copy task in a collection role: the exact text the role provisions."""

    def walk(tasks: list[dict[str, Any]]) -> str | None:
        for task in tasks:
            if task.get("name") == task_name:
                return task["ansible.builtin.copy"]["content"]
            found = walk(task.get("block", []))
            if found is not None:
                return found
        return None

    content = walk(yaml.safe_load(tasks_file.read_text()))
    assert content is not None, f"{task_name!r} not found in {tasks_file}"
    return content


STACK_ROLE = REPO / "roles/grafana_stack"


def _stack_vars(component: str) -> dict[str, Any]:
    """The vars roles/grafana_stack hands to the collection's `component` role (its import_role task)."""
    (task,) = [
        t
        for t in yaml.safe_load((STACK_ROLE / "tasks" / f"{component}.yml").read_text())
        if "ansible.builtin.import_role" in t
    ]
    assert task["ansible.builtin.import_role"]["name"] == f"grafana.grafana.{component}"
    return dict(task["vars"])


def _render_role(
    root: Path, name: str, defaults: Path | list[Path], templates: Path, tasks: list[dict[str, Any]]
) -> None:
    """A throwaway role whose defaults ARE the real roles' defaults (same precedence) and whose
    templates directory IS the real role's, with tasks that only render into render_dir."""
    role = root / "roles" / name
    (role / "defaults" / "main").mkdir(parents=True)
    (role / "tasks").mkdir()
    for index, path in enumerate([defaults] if isinstance(defaults, Path) else defaults):
        (role / "defaults" / "main" / f"{index}-{path.parent.parent.name}.yml").symlink_to(path)
    (role / "templates").symlink_to(templates, target_is_directory=True)
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))


def _template(src: str, dest: str) -> dict[str, Any]:
    return {
        "name": f"render {dest}",
        "ansible.builtin.template": {"src": src, "dest": "{{ render_dir }}/{{ inventory_hostname }}/" + dest},
    }


def _with_stack_vars(components: list[str], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`tasks` in a block carrying the vars roles/grafana_stack passes to those collection roles."""
    merged: dict[str, Any] = {}
    for component in components:
        merged.update(_stack_vars(component))
    return [{"name": "as roles/grafana_stack imports " + ", ".join(components), "vars": merged, "block": tasks}]


def _build_render_project(root: Path) -> Path:
    roles = COLLECTION / "roles"
    extra_templates = root / "extra_templates"
    extra_templates.mkdir()
    # Provisioning files exactly as the grafana role writes them (text copied out of its tasks).
    (extra_templates / "datasources.yml.j2").write_text(
        _task_content(roles / "grafana/tasks/datasources.yml", "Create/Update datasources file (provisioning)")
    )
    (extra_templates / "dashboards.yml.j2").write_text(
        _task_content(roles / "grafana/tasks/dashboards.yml", "Create/Update dashboards file (provisioning)")
    )
    for name in ("grafana.ini.j2",):
        (extra_templates / name).symlink_to(roles / "grafana/templates" / name)
    (extra_templates / "grafana-tls.conf.j2").symlink_to(STACK_ROLE / "templates/grafana-tls.conf.j2")
    mkdir = {
        "name": "output dir",
        "ansible.builtin.file": {"path": "{{ render_dir }}/{{ inventory_hostname }}", "state": "directory"},
    }
    _render_role(
        root,
        "render_prometheus",
        REPO / "roles/prometheus/defaults/main.yml",
        REPO / "roles/prometheus/templates",
        [
            mkdir,
            _template("prometheus.yml.j2", "prometheus.yml"),
            _template("prometheus.service.j2", "prometheus.service"),
        ],
    )
    _render_role(
        root,
        "render_node_exporter",
        REPO / "roles/node_exporter/defaults/main.yml",
        REPO / "roles/node_exporter/templates",
        [mkdir, _template("node_exporter.service.j2", "node_exporter.service")],
    )
    stack_defaults = STACK_ROLE / "defaults/main.yml"
    _render_role(
        root,
        "render_loki",
        [roles / "loki/defaults/main.yml", stack_defaults],
        roles / "loki/templates",
        _with_stack_vars(["loki"], [_template("config.yml.j2", "loki.yml")]),
    )
    _render_role(
        root,
        "render_tempo",
        [roles / "tempo/defaults/main.yml", stack_defaults],
        roles / "tempo/templates",
        _with_stack_vars(["tempo"], [_template("config.yml.j2", "tempo.yml")]),
    )
    _render_role(
        root,
        "render_alloy",
        [roles / "alloy/defaults/main.yml", stack_defaults],
        roles / "alloy/templates",
        [
            {
                "name": "the grafana_stack agent preflight",
                "ansible.builtin.include_tasks": str(STACK_ROLE / "tasks/preflight.yml"),
            },
            *_with_stack_vars(
                ["alloy"],
                [
                    _template("config.alloy.j2", "config.alloy"),
                    _template("alloy.j2", "alloy.env"),
                    _template("override.conf.j2", "alloy-override.conf"),
                ],
            ),
        ],
    )
    _render_role(
        root,
        "render_grafana",
        [roles / "grafana/defaults/main.yml", stack_defaults],
        extra_templates,
        [
            {
                "name": "the grafana_stack server preflight",
                "ansible.builtin.include_tasks": str(STACK_ROLE / "tasks/preflight.yml"),
                "vars": {"grafana_stack__preflight_server": True},
            },
            *_with_stack_vars(
                ["loki", "tempo", "alloy", "grafana"],
                [
                    {
                        # Same merge as the grafana role's first task.
                        "name": "inherit grafana_ini defaults",
                        "ansible.builtin.set_fact": {
                            "grafana_ini": "{{ grafana_ini_default | ansible.builtin.combine("
                            "grafana_ini | default({}), recursive=true) }}"
                        },
                    },
                    _template("grafana.ini.j2", "grafana.ini"),
                    _template("datasources.yml.j2", "datasources.yml"),
                    _template("dashboards.yml.j2", "dashboards.yml"),
                    _template("grafana-tls.conf.j2", "grafana-tls.conf"),
                    {
                        "name": "record grafana facts the role acts on",
                        "ansible.builtin.copy": {
                            "dest": "{{ render_dir }}/{{ inventory_hostname }}/grafana_facts.json",
                            "content": "{{ {'dashboards_dir': grafana_dashboards_dir, 'version': grafana_version,"
                            " 'loki_version': loki_version, 'tempo_version': tempo_version,"
                            " 'alloy_version': alloy_version, 'api_url': grafana_api_url,"
                            " 'enabled': sumflow_grafana_stack_enabled | default(true)} | to_json }}",
                        },
                    },
                ],
            ),
        ],
    )
    # The real playbooks' hosts, play vars and play split; the dashboards directory resolves as in the
    # repo (roles/grafana_stack: role_path/../../observability).
    (root / "roles" / "pki").symlink_to(REPO / "roles/pki", target_is_directory=True)
    playbooks = root / "playbooks"
    playbooks.mkdir()
    (root / "observability").symlink_to(REPO / "observability", target_is_directory=True)
    real = {name: yaml.safe_load((REPO / "playbooks" / name).read_text()) for name in ("monitoring.yml", "agents.yml")}
    plays = [
        {
            "name": "monitoring hosts",
            "hosts": "monitoring",
            "gather_facts": False,
            "vars": {k: v for p in real["monitoring.yml"] for k, v in p.get("vars", {}).items()},
            # The real pki role, as monitoring.yml runs it first: the CA Grafana and Tempo get inline.
            "roles": ["pki", "render_prometheus", "render_loki", "render_tempo", "render_grafana"],
        },
        {
            "name": "every host",
            "hosts": "kafka:adder:accumulator:monitoring:balancer",
            "gather_facts": False,
            "vars": {k: v for p in real["agents.yml"] for k, v in p.get("vars", {}).items()},
            "roles": ["render_node_exporter", "render_alloy"],
        },
    ]
    # The real playbooks must have the same shape (hosts + the grafana_stack entry points) as rendered here.
    for name, rendered_play in (("monitoring.yml", plays[0]), ("agents.yml", plays[1])):
        assert {p["hosts"] for p in real[name]} == {rendered_play["hosts"]}
    roles_used = [r["role"] for p in real["monitoring.yml"] for r in p.get("roles", [])]
    assert roles_used == ["pki", "prometheus", "grafana_stack"], roles_used
    agent_imports = [
        t["ansible.builtin.import_role"]
        for p in real["agents.yml"]
        for t in p.get("tasks", [])
        if "ansible.builtin.import_role" in t
    ]
    assert agent_imports == [{"name": "grafana_stack", "tasks_from": "agent"}], agent_imports
    (playbooks / "render.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    return playbooks / "render.yml"


def _render(name: str, root: Path) -> Path:
    playbook = _build_render_project(root)
    out = root / "out"
    cache = root / "controller-cache"
    extra = {
        "render_dir": str(out),
        "sumflow_controller_cache": str(cache),
        "pki_dir": str(root / "controller-pki"),
        **LOCAL_CONNECTION,
        **INVENTORIES[name]["extra"],
    }
    proc = run_playbook(
        REPO / "inventory" / INVENTORIES[name]["inventory"],
        playbook,
        extra,
        tmp=root,
        roles_path=root / "roles",
        env=INVENTORIES[name]["env"],
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module", params=sorted(INVENTORIES))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    name = request.param
    inventory = INVENTORIES[name]["inventory"]
    root = _render(name, tmp_path_factory.mktemp(f"render-{name}"))
    listing = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(REPO / "inventory" / inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    inv = json.loads(listing.stdout)
    hostvars = inv["_meta"]["hostvars"]

    def address(host: str) -> str:
        hv = hostvars.get(host, {})
        return str(hv.get("sumflow_node_address", hv.get("ansible_host", host)))

    groups = {g: inv.get(g, {}).get("hosts", []) for g in ("kafka", "adder", "accumulator", "monitoring", "balancer")}
    mon = INVENTORIES[name]["monitoring"]
    return {
        "name": name,
        "inventory": inventory,
        "tls": INVENTORIES[name]["tls"],
        "out": root / "out",
        "root": root,
        "cache": root / "controller-cache",
        "groups": groups,
        "all_hosts": sorted({h for hosts in groups.values() for h in hosts}),
        "address": address,
        "mon": mon,
        "mon_addr": address(mon),
        "expect": INVENTORIES[name],
    }


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- Prometheus --------------------------------------------------------------------------------------------


def test_prometheus_config_passes_promtool_and_scrapes_every_tier(rendered: dict[str, Any], tmp_path: Path) -> None:
    config_path = rendered["out"] / rendered["mon"] / "prometheus.yml"
    proc = subprocess.run([PROMTOOL, "check", "config", str(config_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    config = _yaml(config_path)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    address = rendered["address"]
    groups = rendered["groups"]
    expected = {
        "adder": (groups["adder"], 9464),
        "accumulator": (groups["accumulator"], 8080),
        "kafka": (groups["kafka"], 9404),
        "node": (rendered["all_hosts"], 9100),
        "prometheus": ([rendered["mon"]], 9090),
    }
    assert len(groups["kafka"]) == rendered["expect"]["kafka_count"]
    for job, (hosts, port) in expected.items():
        statics = jobs[job]["static_configs"]
        assert sorted(s["labels"]["host"] for s in statics) == sorted(hosts), job
        assert sorted(t for s in statics for t in s["targets"]) == sorted(f"{address(h)}:{port}" for h in hosts), job
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"
    # Emulated VMs give the Kafka JMX exporter a longer timeout (its own job only); real hosts keep the global.
    slow = {"scrape_interval": "30s", "scrape_timeout": "30s"} if rendered["name"] == "vagrant" else {}
    assert {key: jobs["kafka"][key] for key in ("scrape_interval", "scrape_timeout") if key in jobs["kafka"]} == slow
    assert not any("scrape_timeout" in jobs[job] for job in expected if job != "kafka")
    assert config["global"]["scrape_timeout"] == "10s"
    # node_exporter and Prometheus itself over https with the CA and basic auth; with TLS also the
    # accumulator and the adder (their HAProxy), Loki and Tempo (the monitoring host's HAProxy, on their
    # public ports) and Grafana; the other jobs as before.
    secured = {
        "node": ("prometheus", "scrape.password"),
        "prometheus": ("sumflow", "prometheus.password"),
    }
    if rendered["tls"]:
        secured |= {
            job: ("prometheus", "scrape.password") for job in ("accumulator", "adder", "loki", "tempo", "grafana")
        }
    mon = rendered["mon"]
    for job, port in (("loki", 3100), ("tempo", 3200), ("grafana", 3000)):
        assert jobs[job]["static_configs"] == [{"targets": [f"{address(mon)}:{port}"], "labels": {"host": mon}}]
    for job, (user, password_file) in secured.items():
        assert jobs[job]["scheme"] == "https", job
        assert jobs[job]["tls_config"] == {"ca_file": "/etc/prometheus/web/ca.crt"}, job
        assert jobs[job]["basic_auth"] == {"username": user, "password_file": f"/etc/prometheus/web/{password_file}"}
    for job in set(jobs) - set(secured):
        assert "basic_auth" not in jobs[job] and jobs[job].get("scheme", "http") == "http", job
    # The Grafana stack is on in both inventories: its own components are scraped too.
    assert {"alloy", "loki", "tempo", "grafana"} <= set(jobs)
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert config["storage"]["exemplars"]["max_exemplars"] > 0

    # The rule files the role deploys pass the same validation it runs before copying them.
    rules = sorted((REPO / "observability/prometheus/rules").glob("*.yml"))
    if rules:
        proc = subprocess.run([PROMTOOL, "check", "rules", *map(str, rules)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("settings", "plain"),
    [
        ({"sumflow_tls_enabled": False}, {"adder", "accumulator"}),
        ({"sumflow_adder_metrics_tls_enabled": False}, {"adder"}),
    ],
)
def test_prometheus_scrapes_the_services_over_http_where_their_proxy_is_off(
    settings: dict[str, bool], plain: set[str], tmp_path: Path
) -> None:
    """The sumflow settings the inventory gives both plays decide each service job's scheme."""
    _render_role(
        tmp_path,
        "render_prometheus",
        REPO / "roles/prometheus/defaults/main.yml",
        REPO / "roles/prometheus/templates",
        [
            {"name": "out", "ansible.builtin.file": {"path": "{{ render_dir }}", "state": "directory"}},
            {
                "name": "prometheus.yml",
                "ansible.builtin.template": {"src": "prometheus.yml.j2", "dest": "{{ render_dir }}/prometheus.yml"},
            },
        ],
    )
    play = {"name": "render", "hosts": "monitoring", "gather_facts": False, "roles": ["render_prometheus"]}
    (tmp_path / "render.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    extra = {"render_dir": str(tmp_path / "out"), **LOCAL_CONNECTION, **settings}
    proc = run_playbook(
        REPO / "inventory/example", tmp_path / "render.yml", extra, tmp=tmp_path, roles_path=tmp_path / "roles"
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    config_path = tmp_path / "out/prometheus.yml"
    check = subprocess.run([PROMTOOL, "check", "config", str(config_path)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {job["job_name"]: job for job in _yaml(config_path)["scrape_configs"]}
    for job in ("adder", "accumulator", "node"):
        if job in plain:
            assert jobs[job].get("scheme", "http") == "http" and "basic_auth" not in jobs[job], jobs[job]
            assert "tls_config" not in jobs[job], jobs[job]
        else:
            assert jobs[job]["scheme"] == "https" and jobs[job]["basic_auth"]["username"] == "prometheus", jobs[job]


def test_prometheus_unit_stores_exemplars_and_takes_retention_from_group_vars(rendered: dict[str, Any]) -> None:
    unit = (rendered["out"] / rendered["mon"] / "prometheus.service").read_text()
    group_vars = _yaml(REPO / "inventory" / rendered["inventory"] / "group_vars/monitoring.yml")
    exec_start = " ".join(
        line.strip().rstrip("\\") for line in unit.split("ExecStart=")[1].split("\nExecReload")[0].splitlines()
    )
    flags = exec_start.split()
    assert flags[0] == "/opt/prometheus/prometheus"
    assert "--enable-feature=exemplar-storage" in flags
    assert f"--storage.tsdb.retention.time={group_vars['prometheus_retention_time']}" in flags
    assert f"--storage.tsdb.retention.size={group_vars['prometheus_retention_size']}" in flags
    # Tempo's metrics generator remote-writes span metrics (traces -> metrics).
    assert "--web.enable-remote-write-receiver" in flags
    assert "--web.listen-address=0.0.0.0:9090" in flags
    assert "--web.config.file=/etc/prometheus/web/web.yml" in flags
    for hardening in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/var/lib/prometheus",
        "User=prometheus",
    ):
        assert hardening in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit


def test_node_exporter_unit_on_every_host(rendered: dict[str, Any]) -> None:
    for host in rendered["all_hosts"]:
        unit = (rendered["out"] / host / "node_exporter.service").read_text()
        assert "ExecStart=/opt/node_exporter/node_exporter" in unit
        assert "--web.listen-address=0.0.0.0:9100" in unit
        assert "--web.config.file=/etc/node_exporter/web.yml" in unit
        assert "ProtectSystem=strict" in unit and "NoNewPrivileges=yes" in unit
        # systemd expands "$": a literal one in a regex flag must be written "$$".
        for line in unit.splitlines():
            if "mount-points-exclude" in line:
                assert "$$" in line and not re.search(r"(?<!\$)\$(?!\$)", line)


# --- Grafana -----------------------------------------------------------------------------------------------


def test_grafana_datasources_point_at_the_monitoring_host_and_link_signals(rendered: dict[str, Any]) -> None:
    doc = _yaml(rendered["out"] / rendered["mon"] / "datasources.yml")
    assert doc["apiVersion"] == 1
    sources = {ds["uid"]: ds for ds in doc["datasources"]}
    mon = rendered["mon_addr"]
    # Prometheus serves HTTPS with basic auth: the datasource checks it against our CA and logs in with
    # the password the prometheus role generated (the same controller file).
    prometheus = sources["prometheus"]
    assert prometheus["url"] == f"https://{mon}:9090"
    assert prometheus["basicAuth"] is True
    assert prometheus["basicAuthUser"] == "sumflow"
    assert prometheus["jsonData"]["tlsAuthWithCACert"] is True
    password = (rendered["cache"] / "credentials/prometheus_web_password").read_text().split()[0]
    assert len(password) == 40
    assert prometheus["secureJsonData"] == {
        "basicAuthPassword": password,
        "tlsCACert": (rendered["root"] / "controller-pki/ca.crt").read_text().strip(),
    }
    ca = (rendered["root"] / "controller-pki/ca.crt").read_text().strip()
    # Loki and Tempo: with TLS, through the monitoring host's HAProxy over https checked against the CA,
    # with their users and the passwords generated on the controller; without, plaintext and no login.
    for uid, port in (("loki", 3100), ("tempo", 3200)):
        source = sources[uid]
        if rendered["tls"]:
            secret = (rendered["cache"] / f"credentials/{uid}_web_password").read_text().split()[0]
            assert len(secret) == 40 and secret != password
            assert source["url"] == f"https://{mon}:{port}", uid
            assert (source["basicAuth"], source["basicAuthUser"]) == (True, "sumflow"), uid
            assert source["secureJsonData"] == {"basicAuthPassword": secret, "tlsCACert": ca}, uid
            assert source["jsonData"]["tlsAuthWithCACert"] is True, uid
        else:
            assert source["url"] == f"http://{mon}:{port}", uid
            assert source["basicAuth"] is False and source["jsonData"]["tlsAuthWithCACert"] is False, uid
            assert source["secureJsonData"] == {"basicAuthPassword": "", "tlsCACert": ""}, uid
    assert [ds["type"] for ds in doc["datasources"]] == ["prometheus", "loki", "tempo"]
    assert [uid for uid, ds in sources.items() if ds.get("isDefault")] == ["prometheus"]

    prom = sources["prometheus"]["jsonData"]
    assert prom["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "tempo", "urlDisplayLabel": "Open trace"}
    ]
    tempo = sources["tempo"]["jsonData"]
    assert tempo["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert tempo["tracesToLogsV2"]["filterByTraceID"] is True
    assert "$${__trace.traceId}" in tempo["tracesToLogsV2"]["query"]
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    assert tempo["serviceMap"]["datasourceUid"] == "prometheus"


def test_loki_derived_field_finds_the_trace_id_in_a_real_log_line(rendered: dict[str, Any]) -> None:
    """The regex must match what sumflow's JSON formatter writes, so a log line links to its trace."""
    import logging

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from sumflow.observability.logging import JsonFormatter

    doc = _yaml(rendered["out"] / rendered["mon"] / "datasources.yml")
    (field,) = next(ds for ds in doc["datasources"] if ds["uid"] == "loki")["jsonData"]["derivedFields"]
    assert field["datasourceUid"] == "tempo"
    # Grafana reads "$$" in provisioning files as a literal "$": the link is the raw matched value.
    assert field["url"] == "$${__value.raw}"

    tracer = TracerProvider().get_tracer("render-test")
    with tracer.start_as_current_span("call") as span:
        record = logging.makeLogRecord({"msg": "added", "levelname": "INFO", "request_id": "r-1"})
        line = JsonFormatter("adder").format(record)
        expected = format(span.get_span_context().trace_id, "032x")
    match = re.search(field["matcherRegex"], line)
    assert match is not None, (field["matcherRegex"], line)
    assert match.group(1) == expected
    assert trace.get_current_span().get_span_context().is_valid is False


def test_grafana_admin_password_is_generated_and_anonymous_access_is_off(rendered: dict[str, Any]) -> None:
    ini = configparser.ConfigParser(interpolation=None)
    # Top-level keys (instance_name) come before the first section, as Grafana allows.
    ini.read_string("[top]\n" + (rendered["out"] / rendered["mon"] / "grafana.ini").read_text())
    password = ini["security"]["admin_password"]
    assert password not in ("", "admin", "changeme", "password")
    assert len(password) >= 32
    # Kept on the controller, so every run (and the operator) sees the same secret.
    stored = (rendered["cache"] / "credentials/grafana_admin_password").read_text().split()[0]
    assert stored == password
    assert ini["auth.anonymous"]["enabled"] == "False"
    assert ini["users"]["allow_sign_up"] == "False"
    assert ini["security"]["admin_user"] == "admin"
    assert ini["analytics"]["reporting_enabled"] == "False"


def test_grafana_serves_https_with_the_host_certificate(rendered: dict[str, Any]) -> None:
    """With TLS Grafana serves HTTPS with the host certificate, which systemd hands it as credentials
    (root-only files: no grafana user needed before the package), and /metrics takes Prometheus' scrape
    user; without, plain HTTP as before."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string("[top]\n" + (rendered["out"] / rendered["mon"] / "grafana.ini").read_text())
    server = ini["server"]
    dropin = (rendered["out"] / rendered["mon"] / "grafana-tls.conf").read_text()
    if not rendered["tls"]:
        assert server["protocol"] == "http"
        assert server["root_url"] == f"http://{rendered['mon_addr']}:3000/"
        assert (server["cert_file"], server["cert_key"]) == ("", "")
        assert (ini["metrics"]["basic_auth_username"], ini["metrics"]["basic_auth_password"]) == ("", "")
        return
    assert server["protocol"] == "https"
    assert server["root_url"] == f"https://{rendered['mon_addr']}:3000/"
    assert server["http_addr"] == "0.0.0.0" and server["http_port"] == "3000"
    assert server["cert_file"] == "/run/credentials/grafana-server.service/tls.crt"
    assert server["cert_key"] == "/run/credentials/grafana-server.service/tls.key"
    assert server["min_tls_version"] == "TLS1.2"
    lines = [line for line in dropin.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "[Service]",
        "LoadCredential=tls.crt:/etc/grafana/tls/tls.crt",
        "LoadCredential=tls.key:/etc/grafana/tls/tls.key",
    ]
    scrape = (rendered["cache"] / "credentials/node_exporter_web_password").read_text().split()[0]
    assert ini["metrics"]["enabled"] == "True"
    assert (ini["metrics"]["basic_auth_username"], ini["metrics"]["basic_auth_password"]) == ("prometheus", scrape)


def test_dashboards_are_provisioned_from_the_repo_files(rendered: dict[str, Any]) -> None:
    doc = _yaml(rendered["out"] / rendered["mon"] / "dashboards.yml")
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    facts = json.loads((rendered["out"] / rendered["mon"] / "grafana_facts.json").read_text())
    dashboards_dir = Path(facts["dashboards_dir"]).resolve()
    assert dashboards_dir == (REPO / "observability/grafana/dashboards").resolve()
    dashboards = sorted(dashboards_dir.glob("*.json"))
    assert dashboards, "no dashboard JSON to provision"
    provisioned = {ds["uid"] for ds in _yaml(rendered["out"] / rendered["mon"] / "datasources.yml")["datasources"]}
    for path in dashboards:
        board = json.loads(path.read_text())
        used = set(re.findall(r'"uid":\s*"([^"]+)"', json.dumps(board.get("panels", []))))
        assert used <= provisioned | {board.get("uid")}, (path.name, used - provisioned)

    # Pinned: "latest" would ask GitHub at run time.
    for key in ("version", "loki_version", "tempo_version", "alloy_version"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", facts[key]), (key, facts[key])
    scheme = "https" if rendered["tls"] else "http"
    assert facts["api_url"] == f"{scheme}://{rendered['mon_addr']}:3000/"


# --- Loki and Tempo ----------------------------------------------------------------------------------------


def test_loki_is_single_binary_with_filesystem_storage_and_retention(rendered: dict[str, Any]) -> None:
    loki = _yaml(rendered["out"] / rendered["mon"] / "loki.yml")
    assert loki["target"] == "all"
    # Loki's own multi-tenancy stays off: HAProxy in front of it requires the login (with TLS), and Loki
    # itself listens on loopback only, at its backend port.
    assert loki["auth_enabled"] is False
    if rendered["tls"]:
        assert (loki["server"]["http_listen_address"], loki["server"]["http_listen_port"]) == ("127.0.0.1", 13100)
    else:
        assert (loki["server"]["http_listen_address"], loki["server"]["http_listen_port"]) == ("0.0.0.0", 3100)
    assert loki["common"]["storage"]["filesystem"]["chunks_directory"].startswith("/var/lib/loki/")
    (schema,) = loki["schema_config"]["configs"]
    assert (schema["store"], schema["object_store"], schema["schema"]) == ("tsdb", "filesystem", "v13")
    assert loki["limits_config"]["retention_period"] == rendered["expect"]["loki_retention"]
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["compactor"]["retention_enabled"] is True
    assert loki["compactor"]["delete_request_store"] == "filesystem"


def test_tempo_receives_otlp_off_alloys_port_and_stores_locally(rendered: dict[str, Any]) -> None:
    tempo = _yaml(rendered["out"] / rendered["mon"] / "tempo.yml")
    otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    server = tempo["server"]
    # With TLS on loopback behind HAProxy (which holds 3200, 4417 and 4418), else on every address.
    if rendered["tls"]:
        assert (server["http_listen_address"], server["http_listen_port"]) == ("127.0.0.1", 13200)
        assert (otlp["grpc"]["endpoint"], otlp["http"]["endpoint"]) == ("127.0.0.1:14417", "127.0.0.1:14418")
    else:
        assert (server["http_listen_address"], server["http_listen_port"]) == ("0.0.0.0", 3200)
        assert (otlp["grpc"]["endpoint"], otlp["http"]["endpoint"]) == ("0.0.0.0:4417", "0.0.0.0:4418")
    assert tempo["storage"]["trace"]["backend"] == "local"
    assert tempo["storage"]["trace"]["local"]["path"].startswith("/var/lib/tempo/")
    assert tempo["compactor"]["compaction"]["block_retention"] == rendered["expect"]["loki_retention"]
    (remote,) = tempo["metrics_generator"]["storage"]["remote_write"]
    assert remote["url"] == f"https://{rendered['mon_addr']}:9090/api/v1/write"
    password = (rendered["cache"] / "credentials/prometheus_web_password").read_text().split()[0]
    assert remote["basic_auth"] == {"username": "sumflow", "password_file": "/etc/tempo/prometheus.password"}
    assert password not in (rendered["out"] / rendered["mon"] / "tempo.yml").read_text()
    assert remote["tls_config"] == {"ca": (rendered["root"] / "controller-pki/ca.crt").read_text().strip()}
    assert "span-metrics" in tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert tempo["usage_report"]["reporting_enabled"] is False


# --- Alloy -------------------------------------------------------------------------------------------------


def _alloy_attr(config: str, block: str, attr: str) -> str:
    """Value of `attr = "..."` inside the first `block {` of an Alloy config."""
    start = config.index(block)
    match = re.compile(attr + r'\s*=\s*"((?:[^"\\]|\\.)*)"').search(config, start)
    assert match is not None, (block, attr)
    return match.group(1)


def test_alloy_ships_unit_logs_to_loki_and_traces_to_tempo(rendered: dict[str, Any]) -> None:
    mon = rendered["mon_addr"]
    for host in rendered["all_hosts"]:
        config = (rendered["out"] / host / "config.alloy").read_text()
        # Minimal syntax check: balanced braces outside strings.
        depth = 0
        for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', config):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0
        assert depth == 0
        assert "{{" not in config and "{%" not in config

        scheme = "https" if rendered["tls"] else "http"
        assert _alloy_attr(config, 'loki.write "monitoring"', "url") == f"{scheme}://{mon}:3100/loki/api/v1/push"
        assert _alloy_attr(config, 'otelcol.exporter.otlp "tempo"', "endpoint") == f"{mon}:4417"
        assert _alloy_attr(config, 'otelcol.receiver.otlp "local"', "endpoint") == "127.0.0.1:4317"
        assert f'labels        = {{host = "{host}"}}' in config

        keep = _alloy_attr(config, 'loki.relabel "journal"', "regex")
        for unit in ("sumflow-adder.service", "sumflow-accumulator.service", "kafka.service"):
            assert re.fullmatch(keep, unit), unit
        for unit in ("ssh.service", "sumflow-adder.socket", "prometheus.service"):
            assert not re.fullmatch(keep, unit), unit
        assert 'target_label  = "unit"' in config
        assert 'source_labels = ["__journal_priority_keyword"]' in config

        labels = re.search(r"stage\.labels\s*\{\s*values\s*=\s*\{([^}]*)\}", config)
        assert labels is not None
        assert set(re.findall(r"(\w+)\s*=", labels.group(1))) == {"level", "service"}

        env = (rendered["out"] / host / "alloy.env").read_text()
        listen = re.search(r"--server\.http\.listen-addr=([\d.]+):(\d+)", env)
        assert listen is not None, env
        assert listen.groups() == (rendered["address"](host), "12345")


def _alloy_block(config: str, header: str) -> str:
    """The body of the block that starts with `header {` (nested braces included)."""
    start = config.index(header + " {") + len(header) + 2
    depth, end = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(config[end], 0)
        end += 1
    return config[start : end - 1]


def test_alloy_pushes_and_exports_over_tls_with_the_credentials(rendered: dict[str, Any]) -> None:
    """With TLS, Alloy logs in to Loki and Tempo (HAProxy) and checks them against the CA; the passwords
    are root-only files systemd hands the alloy user as credentials, never in the 0644 config."""
    loki_password = rendered["cache"] / "credentials/loki_web_password"
    tempo_password = rendered["cache"] / "credentials/tempo_web_password"
    for host in rendered["all_hosts"]:
        config = (rendered["out"] / host / "config.alloy").read_text()
        override = (rendered["out"] / host / "alloy-override.conf").read_text()
        loki = _alloy_block(config, 'loki.write "monitoring"')
        exporter = _alloy_block(config, 'otelcol.exporter.otlp "tempo"')
        if not rendered["tls"]:
            assert "basic_auth" not in loki and "tls_config" not in loki
            assert re.search(r"tls\s*\{\s*insecure\s*=\s*true\s*\}", exporter), exporter
            assert "otelcol.auth.basic" not in config and "LoadCredential" not in override
            continue
        assert re.search(
            r'basic_auth\s*\{\s*username\s*=\s*"sumflow"\s*'
            r'password_file\s*=\s*"/run/credentials/alloy\.service/loki\.password"\s*\}',
            loki,
        ), loki
        assert re.search(r'tls_config\s*\{\s*ca_file\s*=\s*"/etc/alloy/sumflow-ca\.crt"\s*\}', loki), loki
        assert re.search(r"auth\s*=\s*otelcol\.auth\.basic\.tempo\.handler", exporter), exporter
        assert re.search(r'tls\s*\{\s*ca_file\s*=\s*"/etc/alloy/sumflow-ca\.crt"\s*\}', exporter), exporter
        assert "insecure" not in exporter
        auth = _alloy_block(config, 'otelcol.auth.basic "tempo"')
        assert re.search(r'username\s*=\s*"sumflow"\s*password\s*=\s*local\.file\.tempo_password\.content', auth)
        password_file = _alloy_block(config, 'local.file "tempo_password"')
        assert _alloy_attr(password_file, "", "filename") == "/run/credentials/alloy.service/tempo.password"
        assert re.search(r"is_secret\s*=\s*true", password_file)
        for secret in (loki_password, tempo_password):
            assert secret.read_text().split()[0] not in config
        lines = [line for line in override.splitlines() if line and not line.startswith("#")]
        assert lines == [
            "[Service]",
            "LoadCredential=loki.password:/etc/alloy/credentials/loki.password",
            "LoadCredential=tempo.password:/etc/alloy/credentials/tempo.password",
        ]


def test_alloy_json_stage_reads_the_fields_our_services_log(rendered: dict[str, Any]) -> None:
    """Every field the pipeline extracts is in a real log line; level/service values make sane labels."""
    import logging

    from sumflow.observability.logging import JsonFormatter

    config = (rendered["out"] / rendered["mon"] / "config.alloy").read_text()
    block = re.search(r"stage\.json\s*\{\s*expressions\s*=\s*\{([^}]*)\}", config)
    assert block is not None
    extracted = dict(re.findall(r'(\w+)\s*=\s*"(\w+)"', block.group(1)))
    assert set(extracted) == {"ts", "level", "service", "request_id", "trace_id", "span_id"}

    record = logging.makeLogRecord({"msg": "applied", "levelname": "WARNING", "request_id": "r-9"})
    line = json.loads(JsonFormatter("accumulator").format(record))
    for source in ("ts", "level", "service", "request_id"):
        assert extracted[source] in line
    assert line["level"] == "warning" and line["service"] == "accumulator"
    assert _alloy_attr(config, "stage.timestamp", "format") == "RFC3339"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["ts"])
