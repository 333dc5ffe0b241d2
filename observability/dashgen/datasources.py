"""Datasource references. The Grafana role provisions datasources with exactly these uids."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DataSourceRef

PROMETHEUS_UID = "prometheus"
LOKI_UID = "loki"
TEMPO_UID = "tempo"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
LOKI = DataSourceRef(type_val="loki", uid=LOKI_UID)
TEMPO = DataSourceRef(type_val="tempo", uid=TEMPO_UID)
