"""Just enough PromQL/LogQL text handling for the observability tests (no evaluation here).

- `metric_names`: the metric names a PromQL expression selects (functions, keywords, label names,
  grouping clauses, strings, durations and Grafana variables are not names).
- `with_bool_comparisons`: `a > 0.05 and b == 0` -> `a > bool 0.05 and b == bool 0`, so an alert
  expression returns its measured values (0/1) instead of nothing while it does not fire.
- `grafana_to_prometheus`: replace Grafana's built-in variables by a concrete window.
- `dashboard_queries`: every target of every panel of a dashboard JSON, with its datasource uid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)(\s*)")


def _strip(expr: str) -> str:
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    return _OFFSET.sub("", text)


def metric_names(expr: str) -> set[str]:
    text = _strip(expr)
    names = set()
    for match in _IDENT.finditer(text):
        token = match.group()
        if token.lower() in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation call
        names.add(token)
    # A bare selector such as `{__name__="x"}` is not used by us; fail loudly if it appears.
    if "__name__" in expr:
        raise ValueError(f"selectors by __name__ are not supported here: {expr}")
    return names


def with_bool_comparisons(expr: str) -> str:
    """Insert `bool` after every comparison operator outside label matchers and strings."""
    out = []
    pos = 0
    for span in _protected_spans(expr):
        out.append(_COMPARISON.sub(_add_bool, expr[pos : span[0]]))
        out.append(expr[span[0] : span[1]])
        pos = span[1]
    out.append(_COMPARISON.sub(_add_bool, expr[pos:]))
    return "".join(out)


def _add_bool(match: re.Match[str]) -> str:
    return f"{match.group(1)} bool{match.group(2) or ' '}"


def _protected_spans(expr: str) -> Iterator[tuple[int, int]]:
    """Label matcher blocks `{...}` and strings, where `=~`, `!=` etc. are not comparisons."""
    depth_start = None
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'" and depth_start is None:
            end = _STRING.match(expr, i)
            if end:
                yield (i, end.end())
                i = end.end()
                continue
        if char == "{" and depth_start is None:
            depth_start = i
        elif char == "}" and depth_start is not None:
            yield (depth_start, i + 1)
            depth_start = None
        i += 1


def grafana_to_prometheus(expr: str, rate_window: str) -> str:
    return expr.replace("$__rate_interval", rate_window).replace("$__interval", rate_window).replace("$__range", "5m")


def loki_label_names(expr: str) -> set[str]:
    """Label names in the stream selector `{a="x", b=~"y"}` of a LogQL query."""
    match = re.match(r"\s*\{([^}]*)\}", expr)
    if not match:
        raise ValueError(f"LogQL query without a stream selector: {expr}")
    return set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(1)))


@dataclass(frozen=True, slots=True)
class PanelQuery:
    panel: str
    datasource: str
    expr: str


def dashboard_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    queries = []
    for panel in dashboard.get("panels", []):
        nested = panel.get("panels", [])  # collapsed rows keep their panels inside
        for item in [panel, *nested]:
            for target in item.get("targets", []):
                uid = (target.get("datasource") or item.get("datasource") or {}).get("uid", "")
                expr = target.get("expr") or target.get("query") or ""
                queries.append(PanelQuery(panel=item.get("title", "?"), datasource=uid, expr=expr))
    return queries
