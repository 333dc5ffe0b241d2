"""Panel specs and the one builder that turns a spec into a grafana-foundation-sdk panel, so a
dashboard is a table of questions (title, queries, unit, legend) rather than a series of builder calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import logs, loki, prometheus, stat, table, tempo, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import GridPos, ValueMap, ValueMappingResult

from dashgen.datasources import LOKI, PROMETHEUS, TEMPO

REF_IDS = "ABCDEFGHIJ"


@dataclass(frozen=True, slots=True)
class Query:
    """One expression (PromQL; LogQL or TraceQL for logs and traces panels) and its legend."""

    expr: str
    legend: str = ""
    exemplar: bool = False


class Kind(Enum):
    """How a panel shows its queries."""

    STAT = "stat"  # one big number with a sparkline
    UP = "up"  # 1 = UP (green), 0 = DOWN (red), one tile per series
    TIMESERIES = "timeseries"
    LOGS = "logs"  # Loki
    TRACES = "traces"  # Tempo search results as a table


# (default width, height) of each kind on the 24-column grid
_SIZES = {Kind.STAT: (4, 4), Kind.UP: (8, 4), Kind.TIMESERIES: (8, 8), Kind.LOGS: (24, 10), Kind.TRACES: (24, 9)}


@dataclass(frozen=True, slots=True)
class Panel:
    """One row of a dashboard's panel table. `width` overrides the kind's default; `stacked` and
    `minimum` (None: no floor) apply to time series."""

    kind: Kind
    title: str
    description: str
    queries: Sequence[Query]
    unit: str = "none"
    width: int | None = None
    stacked: bool = False
    minimum: float | None = 0


@dataclass(frozen=True, slots=True)
class Row:
    """A dashboard row: its title and its panels, laid out left to right, top to bottom."""

    title: str
    panels: Sequence[Panel]


def _prom_targets(queries: Sequence[Query]) -> list[prometheus.Dataquery]:
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


def _timeseries(spec: Panel) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .datasource(PROMETHEUS)
        .targets(_prom_targets(spec.queries))
        .unit(spec.unit)
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
    if spec.minimum is not None:
        panel = panel.min(spec.minimum)
    if spec.stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def _stat(spec: Panel) -> stat.Panel:
    return (
        stat.Panel()
        .datasource(PROMETHEUS)
        .targets(_prom_targets(spec.queries))
        .unit(spec.unit)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def _up(spec: Panel) -> stat.Panel:
    return (
        _stat(spec)
        .unit("none")
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


def _logs(spec: Panel) -> logs.Panel:
    (query,) = spec.queries
    return (
        logs.Panel()
        .datasource(LOKI)
        .with_target(loki.Dataquery().ref_id("A").datasource(LOKI).expr(query.expr).max_lines(500))
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(common.LogsSortOrder.DESCENDING)
    )


def _traces(spec: Panel) -> table.Panel:
    (query,) = spec.queries
    return (
        table.Panel()
        .datasource(TEMPO)
        .with_target(tempo.TempoQuery().ref_id("A").datasource(TEMPO).query_type("traceql").query(query.expr).limit(20))
    )


_BUILDERS: dict[Kind, Callable[[Panel], Any]] = {
    Kind.STAT: _stat,
    Kind.UP: _up,
    Kind.TIMESERIES: _timeseries,
    Kind.LOGS: _logs,
    Kind.TRACES: _traces,
}


def build_panel(spec: Panel) -> Builder[Any]:
    """The panel of `spec`: its kind's visualisation, with title, description and grid size."""
    if len(spec.queries) > len(REF_IDS):
        raise ValueError(f"{spec.title}: at most {len(REF_IDS)} queries")
    default_width, height = _SIZES[spec.kind]
    # x=y=0 lets the dashboard builder flow panels left to right, top to bottom.
    place = GridPos(h=height, w=spec.width or default_width, x=0, y=0)
    return _BUILDERS[spec.kind](spec).title(spec.title).description(spec.description).grid_pos(place)


def add_rows(board: dashboard_builders.Dashboard, rows: Sequence[Row]) -> None:
    for section in rows:
        board.with_row(dashboard_builders.Row(section.title))
        for spec in section.panels:
            board.with_panel(build_panel(spec))
