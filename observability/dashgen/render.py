"""Render every dashboard to JSON text (stable key order, trailing newline, panel ids assigned)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashgen import overview
from dashgen.grafana_target import SCHEMA_VERSION

OUTPUT_DIR = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"

DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "sumflow-overview.json": overview.build,
}


def _number_panels(doc: dict[str, Any]) -> None:
    for panel_id, panel in enumerate(doc.get("panels", []), start=1):
        panel["id"] = panel_id


def render(build: Callable[[], dashboard.Dashboard]) -> str:
    doc = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    doc["schemaVersion"] = SCHEMA_VERSION  # the deployed Grafana's, not the builders' release
    _number_panels(doc)
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}
