"""The one metrics catalogue: the docs table is generated from it, queries use its labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from observability.metrics import Metrics, catalogue, catalogue_table, metric_family_names
from tests.promql import alert_rules, dashboard_exprs, family_of, labels_used, metric_names

pytestmark = pytest.mark.requirement("RS-OBS-04", "RS-MON-01")

DOCS = Path(__file__).resolve().parents[3] / "docs" / "observability.md"
_TABLE_RE = re.compile(
    r"<!-- metrics-catalogue:begin[^>]*-->\n(.*?)<!-- metrics-catalogue:end -->", re.DOTALL
)
# Labels Prometheus adds to every series (job/instance/role from the scrape configs, and
# app_kubernetes_io_name, which they set on every radstream target: test_scrape_configs.py).
TARGET_LABELS = frozenset({"job", "instance", "role", "app_kubernetes_io_name", "le"})


class TestCatalogue:
    def test_catalogue_is_what_a_process_declares(self) -> None:
        """Every family a process's registry exports is in the catalogue, and nothing else."""
        registry = CollectorRegistry()
        Metrics(registry, process_collector=False)
        assert {spec.name for spec in catalogue()} == set(metric_family_names(registry))

    def test_docs_table_is_the_catalogue(self) -> None:
        """docs/observability.md lists exactly the catalogue (regenerate with catalogue_table)."""
        found = _TABLE_RE.search(DOCS.read_text())
        assert found is not None, "the generated metrics table markers are missing"
        assert found.group(1) == catalogue_table()

    def test_label_parser(self) -> None:
        """Grouping, joins and matchers are read; label values are not."""
        expr = 'sum by (stage) (rate(x_total{outcome=~"a|b", job!="c"}[5m])) / on (stage) y'
        assert labels_used(expr) == {"stage", "outcome", "job"}


def _check_labels(expr: str) -> list[str]:
    labels = {spec.name: set(spec.labels) for spec in catalogue()}
    known: set[str] = set(TARGET_LABELS)
    for name in metric_names(expr):
        family = family_of(name)
        known |= labels.get(name, set()) | labels.get(family, set())
    return sorted(labels_used(expr) - known)


class TestQueriesUseCatalogueLabels:
    def test_alert_rules_use_declared_labels(self) -> None:
        """Every label an alert groups or matches on is declared by one of its metrics."""
        unknown = {rule["alert"]: _check_labels(rule["expr"]) for rule in alert_rules()}
        assert {alert: labels for alert, labels in unknown.items() if labels} == {}

    def test_dashboard_uses_declared_labels(self) -> None:
        """Every label a dashboard query groups or matches on is declared by one of its metrics."""
        unknown = {expr: _check_labels(expr) for expr in dashboard_exprs()}
        assert {expr: labels for expr, labels in unknown.items() if labels} == {}
