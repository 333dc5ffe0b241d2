"""The Grafana the dashboards are generated for: the version deployed, and its dashboard schemaVersion.

The builders (grafana-foundation-sdk) emit the schemaVersion of their own release; the generator
stamps the one of the deployed Grafana instead, so a provisioned dashboard is neither migrated on
load nor built for a schema the server does not know. A test checks GRAFANA_VERSION against the
version the playbooks deploy (grafana_stack_grafana_version in roles/grafana_stack/defaults/main.yml).

Schema versions per Grafana release come from Grafana's dashboard migrations
(apps/dashboard/pkg/migration/schemaversion): 41 from 11.6 through 12.1; migration 42 (tooltips
hidden with hideFrom.viz) arrived in 12.2.
"""

from __future__ import annotations

GRAFANA_VERSION = "12.1"  # major.minor of the deployed Grafana

SCHEMA_VERSIONS = {"11.6": 41, "12.0": 41, "12.1": 41, "12.2": 42}

SCHEMA_VERSION = SCHEMA_VERSIONS[GRAFANA_VERSION]
