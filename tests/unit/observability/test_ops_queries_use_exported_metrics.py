"""The dashboard's and alert rules' PromQL use only metric names the code exports."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from observability.metrics import Metrics, exported_series_names
from tests.promql import alert_rules, dashboard_exprs, metric_names

pytestmark = pytest.mark.requirement("RS-OBS-04")

# Series Prometheus itself adds to every scrape.
PROMETHEUS_BUILTINS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    """Every series name radstream's registry exports, plus Prometheus built-ins."""
    registry = CollectorRegistry()
    Metrics(registry)
    return exported_series_names(registry) | PROMETHEUS_BUILTINS


class TestMetricNameParser:
    def test_parser_finds_names_not_functions_or_labels(self) -> None:
        """The parser keeps metric names and drops functions, labels, keywords and variables."""
        expr = (
            'histogram_quantile(0.95, sum by (le, stage) (rate(a_seconds_bucket{stage=~"$stage"}'
            "[$__rate_interval]))) / on (stage) b_total and up == 0"
        )
        assert metric_names(expr) == {"a_seconds_bucket", "b_total", "up"}

    def test_parser_reads_grafana_label_values(self) -> None:
        """label_values(metric, label) yields the metric, not the label."""
        assert metric_names("label_values(x_total, stage)") == {"x_total"}


class TestDashboard:
    def test_dashboard_queries_use_exported_metrics(self, exported: frozenset[str]) -> None:
        """Every metric in the Grafana dashboard's queries is exported by the code."""
        used = set().union(*(metric_names(e) for e in dashboard_exprs()))
        assert used
        assert sorted(used - exported) == []

    def test_dashboard_covers_the_pipeline_overview(self) -> None:
        """Throughput, latencies, rejections, lag, DLQ depth and model latency are charted."""
        used = set().union(*(metric_names(e) for e in dashboard_exprs()))
        required = {
            "radstream_stage_events_processed_total",
            "radstream_stage_processing_seconds_bucket",
            "radstream_end_to_end_latency_seconds_bucket",
            "radstream_rejections_total",
            "radstream_consumer_lag_messages",
            "radstream_deadletter_depth_messages",
            "radstream_inference_duration_seconds_bucket",
        }
        assert required <= used

    def test_dashboard_has_p50_p95_p99(self) -> None:
        """Stage latency is charted at the 0.5, 0.95 and 0.99 quantiles."""
        exprs = [e for e in dashboard_exprs() if "radstream_stage_processing_seconds" in e]
        quantiles = {m for e in exprs for m in re.findall(r"histogram_quantile\(([0-9.]+)", e)}
        assert quantiles == {"0.5", "0.95", "0.99"}


class TestAlertRules:
    def test_alert_queries_use_exported_metrics(self, exported: frozenset[str]) -> None:
        """Every metric in the alert rules is exported by the code (or by Prometheus)."""
        used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
        assert used
        assert sorted(used - exported) == []

    def test_required_alerts_exist(self) -> None:
        """Lag, stall, DLQ, error rate, SLO burn, database and audit alerts are defined."""
        names = {rule["alert"] for rule in alert_rules()}
        assert {
            "RadstreamConsumerLagGrowing",
            "RadstreamStageStalled",
            "RadstreamDeadLettersRising",
            "RadstreamHighErrorRate",
            "RadstreamLatencySLOFastBurn",
            "RadstreamDatabaseUnavailable",
            "RadstreamAuditVerificationFailed",
            "RadstreamAuditRecordQuarantined",
        } <= names

    def test_every_alert_has_severity_and_summary(self) -> None:
        """Each alert carries a severity label and a summary for the pager."""
        for rule in alert_rules():
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
