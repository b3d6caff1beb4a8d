"""Metrics: hooks move the right series on the registry they were given, labels stay bounded."""

from __future__ import annotations

import itertools
import re
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from observability.metrics import (
    LATENCY_BUCKETS,
    AuthReason,
    LagStatus,
    Metrics,
    ModelOutcome,
    Outcome,
    RateLimitScope,
    Stopwatch,
    SubmissionKind,
    cdf_at,
    exported_series_names,
    metric_family_names,
    render_metrics,
    serve_metrics,
)
from schemas.errors import ErrorCode
from schemas.events import Stage
from schemas.rollout import PairAgreement

pytestmark = pytest.mark.requirement("RS-OBS-01", "RS-MON-01")


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test, never the global default one."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    """The metrics under test, on the fresh registry."""
    return Metrics(registry)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} was not exported"
    return value


class TestStageHooks:
    def test_received_counts_per_stage(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """stage_received increments the stage's received counter only."""
        metrics.stage_received(Stage.VALIDATION)
        metrics.stage_received(Stage.VALIDATION)
        metrics.stage_received(Stage.INFERENCE)
        assert _value(registry, "radstream_stage_events_received_total", stage="validation") == 2
        assert _value(registry, "radstream_stage_events_received_total", stage="inference") == 1

    def test_processed_counts_outcome_and_observes_latency(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """stage_processed counts the outcome and observes the latency histogram."""
        metrics.stage_processed(Stage.VALIDATION, Outcome.REJECTED, 0.003)
        metrics.stage_processed(Stage.VALIDATION, Outcome.SUCCEEDED, 0.2)
        name = "radstream_stage_events_processed_total"
        assert _value(registry, name, stage="validation", outcome="rejected") == 1
        assert _value(registry, name, stage="validation", outcome="succeeded") == 1
        hist = "radstream_stage_processing_seconds"
        assert _value(registry, f"{hist}_count", stage="validation") == 2
        assert _value(registry, f"{hist}_sum", stage="validation") == pytest.approx(0.203)
        assert _value(registry, f"{hist}_bucket", stage="validation", le="0.004") == 1

    @pytest.mark.parametrize(
        ("hook", "name"),
        [
            ("rejected", "radstream_rejections_total"),
            ("retried", "radstream_retries_total"),
            ("dead_lettered", "radstream_dead_letters_total"),
        ],
    )
    def test_code_counters(
        self, registry: CollectorRegistry, metrics: Metrics, hook: str, name: str
    ) -> None:
        """Rejections, retries and dead letters count by stage and error code."""
        getattr(metrics, hook)(Stage.INFERENCE, ErrorCode.MODEL_NOT_FOUND)
        assert _value(registry, name, stage="inference", error_code="MODEL_NOT_FOUND") == 1

    def test_unknown_stage_is_refused(self, metrics: Metrics) -> None:
        """A stage that is not in the Stage enum cannot become a label."""
        with pytest.raises(ValueError, match="nonsense"):
            metrics.stage_received("nonsense")  # type: ignore[arg-type]

    def test_unknown_error_code_is_refused(self, metrics: Metrics) -> None:
        """An error code outside the catalogue cannot become a label."""
        with pytest.raises(ValueError, match="NOPE"):
            metrics.rejected(Stage.VALIDATION, "NOPE")  # type: ignore[arg-type]

    def test_end_to_end_clamps_negative_skew(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """Clock skew cannot record a negative end-to-end latency."""
        metrics.end_to_end(Stage.RESULTS_SINK, -2.0)
        name = "radstream_end_to_end_latency_seconds"
        assert _value(registry, f"{name}_sum", stage="results_sink") == 0.0
        assert _value(registry, f"{name}_count", stage="results_sink") == 1

    def test_batch_sizes_are_observed(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """stage_batch observes the batch size histogram."""
        metrics.stage_batch(Stage.RESULTS_SINK, 37)
        name = "radstream_stage_batch_size_events"
        assert _value(registry, f"{name}_bucket", stage="results_sink", le="32.0") == 0
        assert _value(registry, f"{name}_bucket", stage="results_sink", le="64.0") == 1

    def test_in_flight_rises_and_falls(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """The in-flight gauge follows the events entering and leaving a stage."""
        name = "radstream_stage_in_flight_events"
        metrics.stage_in_flight(Stage.INFERENCE, 3)
        assert _value(registry, name, stage="inference") == 3
        metrics.stage_in_flight(Stage.INFERENCE, -3)
        assert _value(registry, name, stage="inference") == 0

    def test_deadletter_depth_is_set(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """set_deadletter_depth sets the DLQ depth gauge."""
        metrics.set_deadletter_depth(12)
        assert _value(registry, "radstream_deadletter_depth_messages") == 12


class TestInferenceHooks:
    def test_batch_latency_and_size(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """inference_batch observes latency and batch size per model and version."""
        metrics.inference_batch("chest-xray", "1.2.0", 8, 0.04)
        labels = {"model": "chest-xray", "model_version": "1.2.0"}
        assert _value(registry, "radstream_inference_duration_seconds_count", **labels) == 1
        assert _value(registry, "radstream_inference_batch_size_images_sum", **labels) == 8

    def test_failures_and_refusals(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """Load failures and checksum refusals count per model and version."""
        metrics.model_load_failed("m", "1")
        metrics.model_checksum_refused("m", "1")
        metrics.model_checksum_refused("m", "1")
        labels = {"model": "m", "model_version": "1"}
        assert _value(registry, "radstream_model_load_failures_total", **labels) == 1
        assert _value(registry, "radstream_model_checksum_refusals_total", **labels) == 2

    @pytest.mark.parametrize("bad", ["has space", "", "x" * 200, "Doe^John", "a\nb"])
    def test_free_labels_must_be_names(self, metrics: Metrics, bad: str) -> None:
        """Label values that are not bounded names are refused."""
        with pytest.raises(ValueError, match="bounded name"):
            metrics.model_load_failed(bad, "1")


class TestModelDriftHooks:
    def test_outcomes_count_by_role(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """Each image counts once for its version, role and outcome."""
        metrics.model_observed("m", "2.0", ModelOutcome.SCORED, shadow=True)
        metrics.model_observed("m", "1.0", ModelOutcome.OUT_OF_DISTRIBUTION)
        name = "radstream_model_images_total"
        labels = {"model": "m", "model_version": "2.0", "role": "shadow", "outcome": "scored"}
        assert _value(registry, name, **labels) == 1
        labels = {"model": "m", "model_version": "1.0", "role": "published"}
        assert _value(registry, name, **labels, outcome="out_of_distribution") == 1

    def test_scores_and_statistics_are_observed(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """Scores by label and statistics by name land in their histograms' buckets."""
        metrics.model_observed(
            "m",
            "1.0",
            ModelOutcome.SCORED,
            scores={"lesion": 0.93},
            statistics={"mean": 0.2, "gradient": 0.012},
        )
        score = {"model": "m", "model_version": "1.0", "label": "lesion"}
        assert _value(registry, "radstream_model_score_bucket", **score, le="0.9") == 0
        assert _value(registry, "radstream_model_score_bucket", **score, le="0.95") == 1
        stat = {"model": "m", "model_version": "1.0", "statistic": "gradient"}
        name = "radstream_model_input_statistic_bucket"
        assert _value(registry, name, **stat, le="0.01") == 0
        assert _value(registry, name, **stat, le="0.02") == 1

    @pytest.mark.requirement("RS-MOD-02")
    def test_comparisons_count_by_agreement_and_observe_deltas(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """Each paired image counts once per agreement; deltas land in the signed buckets."""
        metrics.model_compared("m", "1.0", "2.0", PairAgreement.DISAGREE, score_deltas={"x": -0.3})
        metrics.model_compared("m", "1.0", "2.0", "candidate_failed", score_deltas={})
        pair = {"model": "m", "baseline_version": "1.0", "candidate_version": "2.0"}
        name = "radstream_model_comparisons_total"
        assert _value(registry, name, **pair, agreement="disagree") == 1
        assert _value(registry, name, **pair, agreement="candidate_failed") == 1
        delta = "radstream_model_score_delta_bucket"
        assert _value(registry, delta, **pair, label="x", le="-0.5") == 0
        assert _value(registry, delta, **pair, label="x", le="-0.25") == 1
        with pytest.raises(ValueError, match="maybe"):
            metrics.model_compared("m", "1.0", "2.0", "maybe", score_deltas={})

    def test_reference_gauges_share_the_histograms_edges(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """The reference has one series per finite bucket edge, with identical le labels."""
        metrics.model_observed(
            "m", "1", ModelOutcome.SCORED, scores={"x": 0.5}, statistics={"std": 0.5}
        )
        ramp = [(i / 20, i / 20) for i in range(21)]  # uniform on [0, 1]
        metrics.set_model_reference("m", "1", scores={"x": ramp}, statistics={"std": ramp})
        families = {f.name: f for f in registry.collect()}

        def les(family: str, suffix: str = "") -> set[str]:
            return {
                sample.labels["le"]
                for sample in families[family].samples
                if sample.name == family + suffix and sample.labels["le"] != "+Inf"
            }

        assert les("radstream_model_score", "_bucket") == les(
            "radstream_model_score_reference_ratio"
        )
        assert les("radstream_model_input_statistic", "_bucket") == les(
            "radstream_model_input_statistic_reference_ratio"
        )
        reference = {"model": "m", "model_version": "1", "label": "x"}
        assert _value(
            registry, "radstream_model_score_reference_ratio", **reference, le="0.25"
        ) == (pytest.approx(0.25))
        stat = {"model": "m", "model_version": "1", "statistic": "std"}
        name = "radstream_model_input_statistic_reference_ratio"
        assert _value(registry, name, **stat, le="-1.0") == 0.0
        assert _value(registry, name, **stat, le="2.0") == 1.0

    @pytest.mark.parametrize(
        ("value", "share"),
        [
            (-0.1, 0.0),
            (0.0, 0.5),
            (0.05, 0.625),
            (0.1, 0.75),
            (0.15, 0.875),
            (0.2, 1.0),
            (9.0, 1.0),
        ],
    )
    def test_cdf_at_reads_quantiles(self, value: float, share: float) -> None:
        """Linear between quantiles; a point mass (half the values are 0) counts wholly at le."""
        points = [(0.0, 0.0), (0.0, 0.25), (0.0, 0.5), (0.1, 0.75), (0.2, 1.0)]
        assert cdf_at(points, value) == pytest.approx(share)

    def test_cdf_of_nothing_is_zero(self) -> None:
        """An empty distribution has no mass anywhere."""
        assert cdf_at([], 1.0) == 0.0

    def test_model_labels_must_be_names(self, metrics: Metrics) -> None:
        """A label value that is not a bounded name is refused."""
        with pytest.raises(ValueError, match="bounded name"):
            metrics.model_observed("m", "1", ModelOutcome.SCORED, scores={"Doe, John": 0.5})


class TestSinkHooks:
    def test_written_rows_latency_and_conflicts(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """sink_written counts rows and conflicts and observes the write latency."""
        metrics.sink_written("results", rows=200, seconds=0.05, conflicts=3)
        metrics.sink_written("results", rows=10, seconds=0.01)
        assert _value(registry, "radstream_sink_rows_written_total", sink="results") == 210
        assert _value(registry, "radstream_sink_conflicts_total", sink="results") == 3
        assert _value(registry, "radstream_sink_write_seconds_count", sink="results") == 2

    def test_backpressure_accumulates_seconds(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """sink_backpressure adds up seconds spent waiting."""
        metrics.sink_backpressure("audit", 1.5)
        metrics.sink_backpressure("audit", 0.5)
        assert _value(registry, "radstream_sink_backpressure_seconds_total", sink="audit") == 2.0

    def test_skipped_arrivals_count_by_code(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """Malformed arrivals the results sink skipped are counted by their error code."""
        metrics.results_arrival_skipped(ErrorCode.EVENT_MALFORMED)
        metrics.results_arrival_skipped(ErrorCode.EVENT_MALFORMED)
        name = "radstream_results_arrivals_skipped_total"
        assert _value(registry, name, error_code=ErrorCode.EVENT_MALFORMED.value) == 2

    def test_database_up_gauge(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """set_database_up flips the availability gauge."""
        metrics.set_database_up(True)
        assert _value(registry, "radstream_database_up") == 1
        metrics.set_database_up(False)
        assert _value(registry, "radstream_database_up") == 0

    @pytest.mark.parametrize(
        "name",
        [
            "radstream_database_up",
            "radstream_broker_up",
            "radstream_audit_chain_valid",
            "radstream_deadletter_depth_messages",
        ],
    )
    def test_unmeasured_facts_have_no_sample(self, registry: CollectorRegistry, name: str) -> None:
        """A fresh process exports no 0 for what it never checked (no alert on a default)."""
        Metrics(registry)
        assert registry.get_sample_value(name) is None
        assert name in metric_family_names(registry)  # still declared: HELP and TYPE

    def test_broker_up_gauge(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """set_broker_up records the last broker probe."""
        metrics.set_broker_up(False)
        assert _value(registry, "radstream_broker_up") == 0
        metrics.set_broker_up(True)
        assert _value(registry, "radstream_broker_up") == 1


class TestApiHooks:
    def test_request_latency_by_route_and_status(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """api_request observes latency labelled by route template, method and status."""
        metrics.api_request("/v1/results/{result_id}", "get", 404, 0.002)
        labels = {"route": "/v1/results/{result_id}", "method": "GET", "status": "404"}
        assert _value(registry, "radstream_api_request_duration_seconds_count", **labels) == 1
        assert _value(registry, "radstream_api_requests_total", **labels) == 1

    def test_submissions_and_audit_failures(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """Accepted submissions count by kind; unaudited actions count on their own."""
        metrics.api_submitted(SubmissionKind.UPLOAD)
        metrics.api_audit_publish_failed()
        assert _value(registry, "radstream_api_submissions_total", kind="upload") == 1
        assert _value(registry, "radstream_api_audit_publish_failures_total") == 1

    def test_auth_outcomes_by_reason(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """api_auth_decided counts success and failure by reason."""
        metrics.api_auth_decided(success=False, reason=AuthReason.FORBIDDEN)
        metrics.api_auth_decided(success=True, reason=AuthReason.AUTHENTICATED)
        name = "radstream_api_auth_total"
        assert _value(registry, name, outcome="failure", reason="forbidden") == 1
        assert _value(registry, name, outcome="success", reason="authenticated") == 1

    def test_rate_limit_hits(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """api_rate_limit_hit counts refusals by scope."""
        metrics.api_rate_limit_hit(RateLimitScope.SUBJECT)
        assert _value(registry, "radstream_api_rate_limited_total", scope="subject") == 1


class TestLagAndAuditHooks:
    def test_consumer_lag_gauges(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """set_consumer_lag sets message and time lag per group, topic and partition."""
        metrics.set_consumer_lag("radstream-validation", "radstream.images.arrived", 2, 40, 3.5)
        labels = {"group": "radstream-validation", "topic": "radstream.images.arrived"}
        assert _value(registry, "radstream_consumer_lag_messages", partition="2", **labels) == 40
        assert _value(registry, "radstream_consumer_lag_seconds", partition="2", **labels) == 3.5

    def test_group_status_is_one_hot(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """Exactly the current status of a group is 1; a change moves the 1."""
        metrics.set_consumer_group_status("g", LagStatus.WARNING)
        metrics.set_consumer_group_status("g", LagStatus.STALLED)
        values = {
            s.value: _value(registry, "radstream_consumer_group_status", group="g", status=s.value)
            for s in LagStatus
        }
        assert values == {"ok": 0, "warning": 0, "stalled": 1, "stopped": 0, "error": 0}

    def test_audit_verification_failure(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """A failed verification counts a failure and clears the chain-valid gauge."""
        metrics.audit_verified(ok=True)
        metrics.audit_verified(ok=False)
        assert _value(registry, "radstream_audit_verifications_total") == 2
        assert _value(registry, "radstream_audit_verification_failures_total") == 1
        assert _value(registry, "radstream_audit_chain_valid") == 0

    def test_audit_appends(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """audit_appended counts appended records."""
        metrics.audit_appended(5)
        assert _value(registry, "radstream_audit_records_appended_total") == 5

    def test_audit_appends_count_as_the_audit_stage(
        self, registry: CollectorRegistry, metrics: Metrics
    ) -> None:
        """Each appended record is an event the audit stage finished (throughput panels)."""
        metrics.audit_appended(3)
        name = "radstream_stage_events_processed_total"
        assert _value(registry, name, stage="audit", outcome="succeeded") == 3
        assert _value(registry, "radstream_stage_events_received_total", stage="audit") == 3


class TestCatalogue:
    def test_names_follow_conventions(self, registry: CollectorRegistry) -> None:
        """Every radstream family is radstream_<thing>_<unit>; counters end in _total."""
        Metrics(registry, process_collector=False)
        names = metric_family_names(registry)
        assert names
        for name in names:
            assert re.fullmatch(r"radstream_[a-z0-9_]+", name), name
            assert not name.endswith("_total_total"), name

    def test_no_id_labels(self, registry: CollectorRegistry) -> None:
        """No metric is labelled by an id (bounded cardinality)."""
        metrics = Metrics(registry, process_collector=False)
        labels = {
            label for attr in vars(metrics).values() for label in getattr(attr, "_labelnames", ())
        }
        assert labels
        assert not {label for label in labels if label.endswith("_id") or "uid" in label}

    def test_series_names_include_histogram_suffixes(self, registry: CollectorRegistry) -> None:
        """The series list has _bucket/_sum/_count for histograms and _total for counters."""
        Metrics(registry, process_collector=False)
        series = exported_series_names(registry)
        for suffix in ("_bucket", "_sum", "_count"):
            assert f"radstream_stage_processing_seconds{suffix}" in series
        assert "radstream_rejections_total" in series
        assert "radstream_database_up" in series

    def test_process_collector_is_optional(self, registry: CollectorRegistry) -> None:
        """process_* metrics are exported only when asked for."""
        Metrics(registry, process_collector=False)
        assert not any(n.startswith("process_") for n in metric_family_names(registry))
        other = CollectorRegistry()
        Metrics(other)
        assert "process_cpu_seconds_total" in metric_family_names(other)

    def test_latency_buckets_span_1ms_to_10s(self) -> None:
        """Latency buckets cover 1 ms to 10 s with steps small enough for quantiles."""
        assert LATENCY_BUCKETS[0] == 0.001
        assert LATENCY_BUCKETS[-1] == 10.0
        ratios = [b / a for a, b in itertools.pairwise(LATENCY_BUCKETS)]
        assert max(ratios) <= 1.7

    def test_two_registries_are_independent(self) -> None:
        """Metrics on separate registries never share values (no global registry)."""
        first, second = CollectorRegistry(), CollectorRegistry()
        Metrics(first).stage_received(Stage.AUDIT)
        Metrics(second)
        assert _value(first, "radstream_stage_events_received_total", stage="audit") == 1
        assert (
            second.get_sample_value("radstream_stage_events_received_total", {"stage": "audit"})
            is None
        )


class TestExposition:
    def test_render_metrics_parses(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """render_metrics produces text the Prometheus parser reads back."""
        metrics.rejected(Stage.VALIDATION, ErrorCode.IMAGE_EMPTY)
        body, content_type = render_metrics(registry)
        assert content_type.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        (sample,) = [
            s for s in families["radstream_rejections"].samples if s.name.endswith("_total")
        ]
        assert sample.labels == {"stage": "validation", "error_code": "IMAGE_EMPTY"}
        assert sample.value == 1

    def test_serve_metrics_over_http(self, registry: CollectorRegistry, metrics: Metrics) -> None:
        """serve_metrics exposes the registry on /metrics over HTTP."""
        metrics.set_database_up(True)
        server, thread = serve_metrics(registry, "127.0.0.1", 0)
        try:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        assert "radstream_database_up 1.0" in text

    def test_stopwatch_measures_elapsed_time(self) -> None:
        """Stopwatch.elapsed grows monotonically from zero."""
        watch = Stopwatch()
        first = watch.elapsed()
        assert 0 <= first <= watch.elapsed()
