"""Grafana dashboards as code: the single source of truth for observability/grafana/dashboards/*.json.

Regenerate with `make dashboards`; tests/observability checks the committed JSON equals this output.
"""
