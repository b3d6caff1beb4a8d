"""What the shipped alert rules and dashboard query: metric names and label names, from PromQL.

A small reader, not a PromQL parser: it removes strings, variables, ranges and functions and
keeps what can only be metric names, and reads labels from grouping, joins and matchers. Unit
tests check the queries against the catalogue with it; the live monitoring test against scrapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "ops" / "grafana" / "radstream-pipeline.json"
ALERTS = REPO / "ops" / "prometheus" / "alerts.yml"
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)
_GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_LABELS_IN_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
)
_LABELS_IN_MATCHERS = re.compile(r"\{([^}]*)\}")
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (functions, labels and keywords removed)."""
    expr = _STRING_RE.sub('""', expr)  # label values and strings
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    expr = re.sub(r"label_values\(\s*([^,()]+),\s*\w+\s*\)", r"\1", expr)
    expr = _GROUPING_RE.sub("", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and durations
    tokens = re.findall(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", expr)
    return {name for name, call in tokens if not call and name.lower() not in _KEYWORDS}


def labels_used(expr: str) -> set[str]:
    """Label names an expression groups, joins or matches on."""
    expr = _STRING_RE.sub('""', expr)
    names = {
        label.strip()
        for group in _LABELS_IN_GROUPING.findall(expr)
        for label in group.split(",")
        if label.strip()
    }
    for matchers in _LABELS_IN_MATCHERS.findall(expr):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    return names


def family_of(series: str) -> str:
    """The family a series name belongs to (histogram ``_bucket``/``_sum``/``_count`` dropped)."""
    return re.sub(r"_(bucket|sum|count)$", "", series)


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def dashboard_exprs() -> list[str]:
    """Every query and variable definition of the shipped dashboard."""
    return list(_exprs(json.loads(DASHBOARD.read_text())))


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of the shipped alert rules."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]
