"""Small typed helpers over grafana-foundation-sdk builders so dashboards read as a list of questions."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import logs, loki, prometheus, stat, table, tempo, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import GridPos, ValueMap, ValueMappingResult

from dashgen.datasources import LOKI, PROMETHEUS, TEMPO

REF_IDS = "ABCDEFGHIJ"


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression and how its series are named in the legend."""

    expr: str
    legend: str = ""
    exemplar: bool = False


def _prom_targets(queries: list[Query]) -> list[prometheus.Dataquery]:
    targets = []
    for ref_id, query in zip(REF_IDS, queries, strict=False):
        target = (
            prometheus.Dataquery()
            .ref_id(ref_id)
            .datasource(PROMETHEUS)
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
            .range()
        )
        if query.exemplar:
            target = target.exemplar(True)
        targets.append(target)
    return targets


def _place(width: int, height: int) -> GridPos:
    # x=y=0 lets the dashboard builder flow panels left to right, top to bottom.
    return GridPos(h=height, w=width, x=0, y=0)


def timeseries_panel(
    title: str,
    description: str,
    queries: list[Query],
    *,
    unit: str,
    width: int = 8,
    height: int = 8,
    stacked: bool = False,
    minimum: float | None = 0,
) -> timeseries.Panel:
    if len(queries) > len(REF_IDS):
        raise ValueError(f"{title}: at most {len(REF_IDS)} queries")
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_prom_targets(queries))
        .unit(unit)
        .grid_pos(_place(width, height))
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def stat_panel(title: str, description: str, query: Query, *, unit: str, width: int = 4, height: int = 4) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_prom_targets([query]))
        .unit(unit)
        .grid_pos(_place(width, height))
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def up_panel(title: str, description: str, query: Query, *, width: int = 8, height: int = 4) -> stat.Panel:
    """1 = up (green), 0 = down (red), one tile per series."""
    return (
        stat_panel(title, description, query, unit="none", width=width, height=height)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="DOWN", color="red", index=0),
                        "1": ValueMappingResult(text="UP", color="green", index=1),
                    }
                )
            ]
        )
    )


def logs_panel(title: str, description: str, expr: str, *, width: int = 24, height: int = 10) -> logs.Panel:
    return (
        logs.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .with_target(loki.Dataquery().ref_id("A").datasource(LOKI).expr(expr).max_lines(500))
        .grid_pos(_place(width, height))
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(common.LogsSortOrder.DESCENDING)
    )


def traces_panel(title: str, description: str, traceql: str, *, width: int = 24, height: int = 9) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(TEMPO)
        .with_target(tempo.TempoQuery().ref_id("A").datasource(TEMPO).query_type("traceql").query(traceql).limit(20))
        .grid_pos(_place(width, height))
    )


def row(title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title)
