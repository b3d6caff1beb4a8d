"""Every Prometheus metric radstream exports, on a registry passed in, with small hooks.

Agents, sinks and the API never touch metric objects: they call one hook per fact
(``metrics.stage_processed(stage, outcome, seconds)``), as faust's sensors do, so what is
recorded and how it is labelled lives here only. Names follow ``radstream_<thing>_<unit>`` with
base units (``_seconds``) and ``_total`` for counters. Labels are bounded: stages, outcomes and
error codes are enums and are checked; model names, routes and consumer groups are bounded by
configuration; ids never become labels.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from schemas.errors import ErrorCode
from schemas.events import Stage
from schemas.rollout import PairAgreement, ResultRole

# ~1.6x steps from 1 ms to 10 s: between neighbouring buckets a quantile estimate is off by at
# most ~25 %, so p50/p95/p99 of stage and model latencies are meaningful.
LATENCY_BUCKETS: Final = (
    0.001,
    0.0015,
    0.0025,
    0.004,
    0.006,
    0.01,
    0.015,
    0.025,
    0.04,
    0.06,
    0.1,
    0.15,
    0.25,
    0.4,
    0.6,
    1.0,
    1.5,
    2.5,
    4.0,
    6.0,
    10.0,
)
# End to end includes queueing and retries: 10 ms to 10 min.
END_TO_END_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    600.0,
)
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Model scores are probabilities: steps of 0.05 over [0, 1] (drift is measured at these edges).
SCORE_BUCKETS: Final = tuple(round(step * 0.05, 2) for step in range(1, 21))
# A candidate's score minus the active version's on the same image: symmetric around 0, fine
# near it (versions that agree), coarse towards the ends.
SCORE_DELTA_BUCKETS: Final = (
    -1.0,
    -0.5,
    -0.25,
    -0.1,
    -0.05,
    -0.01,
    0.0,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# Input statistics of a preprocessed tensor live mostly in [0, 1] (window and min-max
# normalisations), gradients near 0; z-scored tensors reach past it, so the ends are coarse.
STATISTIC_BUCKETS: Final = (
    -5.0,
    -2.0,
    -1.0,
    -0.5,
    0.0,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    2.0,
    5.0,
)

# Free-form labels (model names, routes, sinks, groups, topics) must look like names, not data.
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.:/{}@+-]{1,128}$")


class Outcome(StrEnum):
    """What became of one event at one stage."""

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE = "duplicate"


class ModelOutcome(StrEnum):
    """What one model version did with one image."""

    SCORED = "scored"
    OUT_OF_DISTRIBUTION = "out_of_distribution"  # refused by the input guard
    FAILED = "failed"


class DicomOutcome(StrEnum):
    """What the DICOM receiver answered one C-STORE (or a refused association)."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # a resend recognised: answered success, no second event
    REFUSED = "refused"  # a failure status, with radstream's error code


class SubmissionKind(StrEnum):
    """How an image reached the API."""

    REFERENCE = "reference"
    UPLOAD = "upload"
    DICOMWEB = "dicomweb"


class AuthReason(StrEnum):
    """Why the API admitted or refused a caller (bounded label values)."""

    AUTHENTICATED = "authenticated"  # a valid token
    UNAUTHENTICATED = "unauthenticated"  # no token, or one that does not verify
    FORBIDDEN = "forbidden"  # a valid token whose roles do not allow the route


class RateLimitScope(StrEnum):
    """Whose budget a rate-limited request exhausted."""

    SUBJECT = "subject"  # an authenticated caller's
    ANONYMOUS = "anonymous"  # a peer address's failed authentication attempts


class LagStatus(StrEnum):
    """A consumer group's health, judged like Burrow: by commits and lag trend, not a threshold."""

    OK = "ok"
    WARNING = "warning"
    STALLED = "stalled"
    STOPPED = "stopped"
    ERROR = "error"


def _le(edge: float) -> str:
    """A bucket edge written exactly as prometheus_client writes a histogram's ``le`` label."""
    return str(floatToGoString(edge))  # type: ignore[no-untyped-call]  # untyped library helper


def _label(value: str) -> str:
    """Refuse label values that are not name-like (protects cardinality and the scrape)."""
    if not _LABEL_RE.match(value):
        raise ValueError(f"label value {value!r} is not a bounded name")
    return value


class KnownGauge(Collector):
    """A gauge without labels that has no sample until its value is known.

    prometheus_client's ``Gauge`` exports 0 from the moment it is created, and a 0 of an
    ``..._up`` or ``..._valid`` gauge is indistinguishable from a real failure: an alert on it
    fires on every healthy process that has not checked yet (or never checks). This one is
    absent until :meth:`set` is first called, so only the process that knows the fact
    exports it.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._value: float | None = None
        self._lock = threading.Lock()
        registry.register(self)

    def set(self, value: float) -> None:
        """Record the current value (from now on the gauge is exported)."""
        with self._lock:
            self._value = float(value)

    @property
    def value(self) -> float | None:
        """The last value set, or ``None`` while unknown."""
        with self._lock:
            return self._value

    def describe(self) -> Iterable[Metric]:
        """The family, so the registry knows the name before any value exists."""
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        """The family, with its one sample once known (HELP/TYPE only before)."""
        value = self.value
        if value is None:
            return [GaugeMetricFamily(self.name, self.documentation)]
        return [GaugeMetricFamily(self.name, self.documentation, value=value)]


# Label sets several families share (hooks pass their values in this order).
_MODEL_VERSION: Final = ("model", "model_version")
_PAIR: Final = ("model", "baseline_version", "candidate_version")
_REQUEST: Final = ("route", "method", "status")
_PARTITION: Final = ("group", "topic", "partition")


@dataclass(frozen=True, slots=True)
class _Families:
    """Declares families on one registry: each metric is one call naming only what differs."""

    registry: CollectorRegistry

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter (``name`` with ``_total``, as queries write it)."""
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge exported from creation (0 until set)."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> Histogram:
        """A histogram with the given bucket edges."""
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def known_gauge(self, name: str, documentation: str) -> KnownGauge:
        """A gauge absent until its value is known (see :class:`KnownGauge`)."""
        return KnownGauge(name, documentation, self.registry)


class Metrics:
    """radstream's metric families on one registry, and the hooks that move them.

    Args:
        registry: where the families are registered (one per process; tests use their own).
        process_collector: also export the standard ``process_*`` metrics on this registry.
    """

    def __init__(self, registry: CollectorRegistry, *, process_collector: bool = True) -> None:
        self.registry = registry
        declare = _Families(registry)
        # ---------------------------------------------------------------- stages
        self.events_received = declare.counter(
            "radstream_stage_events_received_total",
            "Events a stage took from its input topic.",
            ("stage",),
        )
        self.events_processed = declare.counter(
            "radstream_stage_events_processed_total",
            "Events a stage finished, by outcome.",
            ("stage", "outcome"),
        )
        self.processing_seconds = declare.histogram(
            "radstream_stage_processing_seconds",
            "Time a stage spent on one event.",
            ("stage",),
            buckets=LATENCY_BUCKETS,
        )
        self.end_to_end_seconds = declare.histogram(
            "radstream_end_to_end_latency_seconds",
            "Time from an image's occurred_at to its result being stored.",
            ("stage",),
            buckets=END_TO_END_BUCKETS,
        )
        self.rejections = declare.counter(
            "radstream_rejections_total",
            "Events rejected, by stage and error code.",
            ("stage", "error_code"),
        )
        self.retries = declare.counter(
            "radstream_retries_total",
            "Retries of retryable errors, by stage and error code.",
            ("stage", "error_code"),
        )
        self.dead_letters = declare.counter(
            "radstream_dead_letters_total",
            "Messages sent to the dead-letter topic, by stage and error code.",
            ("stage", "error_code"),
        )
        self.stage_batch_size = declare.histogram(
            "radstream_stage_batch_size_events",
            "Events handled together in one batch by a stage.",
            ("stage",),
            buckets=BATCH_SIZE_BUCKETS,
        )
        self.in_flight = declare.gauge(
            "radstream_stage_in_flight_events",
            "Events a stage is processing right now.",
            ("stage",),
        )
        # Only the lag exporter reads the dead-letter topic: a 0 from every worker would be a
        # count nobody made (and would make an exporter's restart look like new dead letters).
        self.deadletter_depth = declare.known_gauge(
            "radstream_deadletter_depth_messages",
            "Dead letters waiting for an operator (neither replayed nor purged).",
        )
        # ---------------------------------------------------------------- inference
        self.inference_seconds = declare.histogram(
            "radstream_inference_duration_seconds",
            "Model runtime per batch.",
            _MODEL_VERSION,
            buckets=LATENCY_BUCKETS,
        )
        self.inference_batch_size = declare.histogram(
            "radstream_inference_batch_size_images",
            "Images per inference batch.",
            _MODEL_VERSION,
            buckets=BATCH_SIZE_BUCKETS,
        )
        self.pixel_handoff = declare.counter(
            "radstream_pixel_handoff_total",
            "Validated images whose pixels inference took from validation in the same process"
            " (hit) or had to read and decode again (miss); only where both stages run together.",
            ("result",),
        )
        self.model_load_failures = declare.counter(
            "radstream_model_load_failures_total", "Models that failed to load.", _MODEL_VERSION
        )
        self.model_checksum_refusals = declare.counter(
            "radstream_model_checksum_refusals_total",
            "Models refused because their weights did not match the declared SHA-256.",
            _MODEL_VERSION,
        )
        self.model_images = declare.counter(
            "radstream_model_images_total",
            "Images a model version handled, by role (published or shadow) and outcome.",
            (*_MODEL_VERSION, "role", "outcome"),
        )
        self.model_scores = declare.histogram(
            "radstream_model_score",
            "Scores a model version gave, per label (drift monitoring).",
            (*_MODEL_VERSION, "label"),
            buckets=SCORE_BUCKETS,
        )
        self.model_input_statistics = declare.histogram(
            "radstream_model_input_statistic",
            "Statistics of the preprocessed images a model version saw, refused ones included.",
            (*_MODEL_VERSION, "statistic"),
            buckets=STATISTIC_BUCKETS,
        )
        self.model_comparisons = declare.counter(
            "radstream_model_comparisons_total",
            "Images the active version and a shadow or canary version both handled, by how the"
            " candidate's outcome compares (agree, disagree, candidate_failed, ...).",
            (*_PAIR, "agreement"),
        )
        self.model_score_deltas = declare.histogram(
            "radstream_model_score_delta",
            "Candidate minus active version score per label on the same image.",
            (*_PAIR, "label"),
            buckets=SCORE_DELTA_BUCKETS,
        )
        self.model_score_reference = declare.gauge(
            "radstream_model_score_reference_ratio",
            "Share of the manifest's reference scores at or below le (the drift baseline).",
            (*_MODEL_VERSION, "label", "le"),
        )
        self.model_input_statistic_reference = declare.gauge(
            "radstream_model_input_statistic_reference_ratio",
            "Share of the manifest's reference input statistics at or below le.",
            (*_MODEL_VERSION, "statistic", "le"),
        )
        # ---------------------------------------------------------------- sinks
        self.sink_rows_written = declare.counter(
            "radstream_sink_rows_written_total", "Rows a sink committed.", ("sink",)
        )
        self.sink_write_seconds = declare.histogram(
            "radstream_sink_write_seconds",
            "Time of one sink write (batch) including commit.",
            ("sink",),
            buckets=LATENCY_BUCKETS,
        )
        self.sink_conflicts = declare.counter(
            "radstream_sink_conflicts_total",
            "Duplicate rows absorbed by idempotent upserts.",
            ("sink",),
        )
        self.results_arrivals_skipped = declare.counter(
            "radstream_results_arrivals_skipped_total",
            "Malformed arrivals the results sink skipped (validation dead-letters them), by code.",
            ("error_code",),
        )
        self.sink_backpressure_seconds = declare.counter(
            "radstream_sink_backpressure_seconds_total",
            "Time a sink held its consumer back (waiting on the database).",
            ("sink",),
        )
        # Reachability gauges exist only in processes that probe (the worker health probes,
        # the API's readiness checks); absent elsewhere, so no alert fires on a 0 never measured.
        self.database_up = declare.known_gauge(
            "radstream_database_up",
            "1 when the last database check of this process succeeded, else 0.",
        )
        self.broker_up = declare.known_gauge(
            "radstream_broker_up", "1 when the last broker check of this process succeeded, else 0."
        )
        self._declare_services(declare)
        if process_collector:
            ProcessCollector(registry=registry)

    def _declare_services(self, declare: _Families) -> None:
        """The studies, API, lag, audit and DICOM families (split from ``__init__`` for size)."""
        # ---------------------------------------------------------------- studies
        self.study_results = declare.counter(
            "radstream_study_results_total", "Study results made, by model.", ("model",)
        )
        self.study_result_seconds = declare.histogram(
            "radstream_study_result_latency_seconds",
            "From a study's completion to its study result (per model and generation).",
            buckets=LATENCY_BUCKETS,
        )
        self.urgent_findings = declare.counter(
            "radstream_urgent_findings_total",
            "Urgent findings raised by clinical decision support, by model.",
            ("model",),
        )
        self.urgent_unacknowledged = declare.gauge(
            "radstream_urgent_findings_unacknowledged",
            "Urgent findings no clinician has acknowledged yet (read from the database).",
        )
        self.urgent_overdue = declare.gauge(
            "radstream_urgent_findings_overdue",
            "Unacknowledged urgent findings older than studies.urgent_acknowledge_seconds.",
        )
        # ---------------------------------------------------------------- API
        self.api_request_seconds = declare.histogram(
            "radstream_api_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            _REQUEST,
            buckets=LATENCY_BUCKETS,
        )
        self.api_requests = declare.counter(
            "radstream_api_requests_total",
            "HTTP requests answered, by route template, method and status.",
            _REQUEST,
        )
        self.api_audit_publish_failures = declare.counter(
            "radstream_api_audit_publish_failures_total",
            "API actions that could not be handed to the audit trail.",
        )
        self.api_submissions = declare.counter(
            "radstream_api_submissions_total",
            "Images accepted for processing, by kind (reference, upload or dicomweb).",
            ("kind",),
        )
        self.api_auth = declare.counter(
            "radstream_api_auth_total",
            "Authentication and authorisation decisions by outcome and reason.",
            ("outcome", "reason"),
        )
        self.api_rate_limited = declare.counter(
            "radstream_api_rate_limited_total",
            "Requests refused by a rate limit, by scope.",
            ("scope",),
        )
        # ---------------------------------------------------------------- consumer lag
        self.consumer_lag_messages = declare.gauge(
            "radstream_consumer_lag_messages", "End offset minus committed offset.", _PARTITION
        )
        self.consumer_lag_seconds = declare.gauge(
            "radstream_consumer_lag_seconds",
            "Estimated age of the oldest unconsumed message.",
            _PARTITION,
        )
        self.consumer_group_status = declare.gauge(
            "radstream_consumer_group_status",
            "1 for the group's current lag status, 0 for the others.",
            ("group", "status"),
        )
        # ---------------------------------------------------------------- audit
        self.audit_records = declare.counter(
            "radstream_audit_records_appended_total", "Records appended to the audit chain."
        )
        self.audit_verifications = declare.counter(
            "radstream_audit_verifications_total", "Audit chain verifications run."
        )
        self.audit_verification_failures = declare.counter(
            "radstream_audit_verification_failures_total",
            "Audit chain verifications that found a broken link, hash or checkpoint.",
        )
        # Only the verifier (`radstream audit verify --every`) knows: absent in every other process.
        self.audit_chain_valid = declare.known_gauge(
            "radstream_audit_chain_valid",
            "1 when the last audit verification of this process succeeded, else 0.",
        )
        # ---------------------------------------------------------------- DICOM receiver
        self.dicom_instances = declare.counter(
            "radstream_dicom_instances_total",
            "C-STORE requests answered by the DICOM receiver, by outcome and error code "
            "(empty for stored and duplicate).",
            ("outcome", "error_code"),
        )
        self.dicom_store_seconds = declare.histogram(
            "radstream_dicom_store_seconds",
            "Time from a C-STORE request to its answer (store, publish, broker confirmation).",
            buckets=LATENCY_BUCKETS,
        )
        self.dicom_associations_refused = declare.counter(
            "radstream_dicom_associations_refused_total",
            "Associations the DICOM receiver rejected (calling AE title not allowed).",
        )
        self.audit_records_quarantined = declare.counter(
            "radstream_audit_records_quarantined_total",
            "Messages on the audit topic the audit agent did not write, quarantined.",
        )

    # -------------------------------------------------------------------- stage hooks
    def stage_received(self, stage: Stage) -> None:
        """An event was taken from the stage's input topic."""
        self.events_received.labels(Stage(stage).value).inc()

    def stage_processed(self, stage: Stage, outcome: Outcome, seconds: float) -> None:
        """A stage finished an event with ``outcome`` after ``seconds``."""
        stage_label = Stage(stage).value
        self.events_processed.labels(stage_label, Outcome(outcome).value).inc()
        self.processing_seconds.labels(stage_label).observe(seconds)

    def rejected(self, stage: Stage, code: ErrorCode) -> None:
        """A stage rejected an event with ``code``."""
        self.rejections.labels(Stage(stage).value, ErrorCode(code).value).inc()

    def retried(self, stage: Stage, code: ErrorCode) -> None:
        """A stage is about to retry after a retryable ``code``."""
        self.retries.labels(Stage(stage).value, ErrorCode(code).value).inc()

    def dead_lettered(self, stage: Stage, code: ErrorCode) -> None:
        """A stage sent a message to the dead-letter topic."""
        self.dead_letters.labels(Stage(stage).value, ErrorCode(code).value).inc()

    def results_arrival_skipped(self, code: ErrorCode) -> None:
        """The results sink skipped a malformed arrival (no lifecycle entry; not dead-lettered)."""
        self.results_arrivals_skipped.labels(ErrorCode(code).value).inc()

    def end_to_end(self, stage: Stage, seconds: float) -> None:
        """A result was stored ``seconds`` after its image's occurred_at."""
        # Clock skew between router and worker can make this negative; clamp rather than lie.
        self.end_to_end_seconds.labels(Stage(stage).value).observe(max(seconds, 0.0))

    def stage_batch(self, stage: Stage, size: int) -> None:
        """A stage handled ``size`` events as one batch."""
        self.stage_batch_size.labels(Stage(stage).value).observe(size)

    def stage_in_flight(self, stage: Stage, delta: int) -> None:
        """``delta`` events entered (positive) or left (negative) the stage's work."""
        self.in_flight.labels(Stage(stage).value).inc(delta)

    def set_deadletter_depth(self, messages: int) -> None:
        """``messages`` dead letters wait for an operator (the lag exporter counts them)."""
        self.deadletter_depth.set(messages)

    # -------------------------------------------------------------------- inference hooks
    def inference_batch(self, model: str, model_version: str, size: int, seconds: float) -> None:
        """A model ran one batch of ``size`` images in ``seconds``."""
        labels = (_label(model), _label(model_version))
        self.inference_seconds.labels(*labels).observe(seconds)
        self.inference_batch_size.labels(*labels).observe(size)

    def pixel_handoff_used(self, hit: bool) -> None:
        """Inference took an image's pixels from validation (hit) or decoded it again (miss)."""
        self.pixel_handoff.labels("hit" if hit else "miss").inc()

    def model_load_failed(self, model: str, model_version: str) -> None:
        """A model could not be loaded."""
        self.model_load_failures.labels(_label(model), _label(model_version)).inc()

    def model_checksum_refused(self, model: str, model_version: str) -> None:
        """A model's weights did not match their checksum and it is not served."""
        self.model_checksum_refusals.labels(_label(model), _label(model_version)).inc()

    def model_observed(
        self,
        model: str,
        model_version: str,
        outcome: ModelOutcome | str,
        *,
        shadow: bool = False,
        scores: Mapping[str, float] | None = None,
        statistics: Mapping[str, float] | None = None,
    ) -> None:
        """A model version handled one image: its outcome, scores and input statistics."""
        labels = (_label(model), _label(model_version))
        role = ResultRole.SHADOW if shadow else ResultRole.PUBLISHED
        self.model_images.labels(*labels, role.value, ModelOutcome(outcome).value).inc()
        for label, score in (scores or {}).items():
            self.model_scores.labels(*labels, _label(label)).observe(score)
        for name, value in (statistics or {}).items():
            self.model_input_statistics.labels(*labels, _label(str(name))).observe(value)

    def model_compared(
        self,
        model: str,
        baseline_version: str,
        candidate_version: str,
        agreement: PairAgreement | str,
        *,
        score_deltas: Mapping[str, float],
    ) -> None:
        """The active and a candidate version handled the same image: agreement, score deltas."""
        labels = (_label(model), _label(baseline_version), _label(candidate_version))
        self.model_comparisons.labels(*labels, PairAgreement(agreement).value).inc()
        for label, delta in score_deltas.items():
            self.model_score_deltas.labels(*labels, _label(label)).observe(delta)

    def set_model_reference(
        self,
        model: str,
        model_version: str,
        *,
        scores: Mapping[str, Sequence[tuple[float, float]]],
        statistics: Mapping[str, Sequence[tuple[float, float]]],
    ) -> None:
        """Export a version's reference distributions at the histograms' bucket edges.

        Each distribution is given as ``(value, cumulative share)`` points (the manifest's
        quantiles); the gauges hold the share at or below each ``le``, so PromQL can compare
        them with the live histograms bucket by bucket.
        """
        labels = (_label(model), _label(model_version))
        for label, points in scores.items():
            for edge in SCORE_BUCKETS:
                self.model_score_reference.labels(*labels, _label(label), _le(edge)).set(
                    cdf_at(points, edge)
                )
        for name, points in statistics.items():
            for edge in STATISTIC_BUCKETS:
                self.model_input_statistic_reference.labels(
                    *labels, _label(str(name)), _le(edge)
                ).set(cdf_at(points, edge))

    # -------------------------------------------------------------------- studies hooks
    def study_result_made(self, model: str, seconds_since_completion: float) -> None:
        """A study result of ``model`` was made ``seconds_since_completion`` after completion."""
        self.study_results.labels(_label(model)).inc()
        self.study_result_seconds.observe(max(seconds_since_completion, 0.0))

    def urgent_finding_raised(self, model: str) -> None:
        """Clinical decision support raised an urgent finding of ``model``."""
        self.urgent_findings.labels(_label(model)).inc()

    def set_urgent_unacknowledged(self, count: int, overdue: int) -> None:
        """How many urgent findings wait for acknowledgement, and how many for too long."""
        self.urgent_unacknowledged.set(count)
        self.urgent_overdue.set(overdue)

    # -------------------------------------------------------------------- sink hooks
    def sink_written(self, sink: str, rows: int, seconds: float, conflicts: int = 0) -> None:
        """A sink committed ``rows`` rows in ``seconds``, ``conflicts`` of them duplicates."""
        label = _label(sink)
        self.sink_rows_written.labels(label).inc(rows)
        self.sink_write_seconds.labels(label).observe(seconds)
        if conflicts:
            self.sink_conflicts.labels(label).inc(conflicts)

    def sink_backpressure(self, sink: str, seconds: float) -> None:
        """A sink held its consumer back for ``seconds``."""
        self.sink_backpressure_seconds.labels(_label(sink)).inc(seconds)

    def set_database_up(self, up: bool) -> None:
        """Record whether the database answered the last check."""
        self.database_up.set(1 if up else 0)

    def set_broker_up(self, up: bool) -> None:
        """Record whether the broker answered the last check."""
        self.broker_up.set(1 if up else 0)

    # -------------------------------------------------------------------- API hooks
    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """An HTTP request on route template ``route`` ended with ``status``."""
        labels = (_label(route), _label(method.upper() or "NONE"), str(int(status)))
        self.api_requests.labels(*labels).inc()
        self.api_request_seconds.labels(*labels).observe(seconds)

    def api_submitted(self, kind: SubmissionKind) -> None:
        """The API accepted an image for processing (``kind`` says how it came)."""
        self.api_submissions.labels(SubmissionKind(kind).value).inc()

    def api_audit_publish_failed(self) -> None:
        """An API action could not be handed to the audit trail."""
        self.api_audit_publish_failures.inc()

    def api_auth_decided(self, *, success: bool, reason: AuthReason) -> None:
        """An authentication/authorisation decision and why."""
        outcome = "success" if success else "failure"
        self.api_auth.labels(outcome, AuthReason(reason).value).inc()

    def api_rate_limit_hit(self, scope: RateLimitScope) -> None:
        """A request was refused by a rate limit (the caller's or the global budget)."""
        self.api_rate_limited.labels(RateLimitScope(scope).value).inc()

    # -------------------------------------------------------------------- lag hooks
    def set_consumer_lag(
        self, group: str, topic: str, partition: int, messages: int, seconds: float
    ) -> None:
        """Record one partition's lag for a consumer group."""
        labels = (_label(group), _label(topic), str(int(partition)))
        self.consumer_lag_messages.labels(*labels).set(messages)
        self.consumer_lag_seconds.labels(*labels).set(seconds)

    def set_consumer_group_status(self, group: str, status: LagStatus) -> None:
        """Mark ``status`` as the group's current status (1) and every other status 0."""
        current = LagStatus(status)
        for candidate in LagStatus:
            value = 1 if candidate is current else 0
            self.consumer_group_status.labels(_label(group), candidate.value).set(value)

    # -------------------------------------------------------------------- DICOM hooks
    def dicom_store_answered(
        self, outcome: str, seconds: float, code: ErrorCode | None = None
    ) -> None:
        """The receiver answered a C-STORE with ``outcome`` after ``seconds``."""
        error_code = ErrorCode(code).value if code is not None else ""
        self.dicom_instances.labels(DicomOutcome(outcome).value, error_code).inc()
        self.dicom_store_seconds.observe(max(seconds, 0.0))

    def dicom_association_refused(self) -> None:
        """The receiver rejected an association (calling AE title not allowed)."""
        self.dicom_associations_refused.inc()

    # -------------------------------------------------------------------- audit hooks
    def audit_appended(self, records: int = 1) -> None:
        """``records`` records were appended to the audit chain.

        Each record is one source message the audit stage finished, so the stage counters
        (throughput, error ratio) show the audit stage like every other.
        """
        self.audit_records.inc(records)
        self.events_received.labels(Stage.AUDIT.value).inc(records)
        self.events_processed.labels(Stage.AUDIT.value, Outcome.SUCCEEDED.value).inc(records)

    def audit_quarantined(self, messages: int = 1) -> None:
        """``messages`` foreign messages on the audit topic were quarantined."""
        self.audit_records_quarantined.inc(messages)

    def audit_verified(self, *, ok: bool) -> None:
        """An audit verification ran; ``ok`` says whether the chain verified."""
        self.audit_verifications.inc()
        if not ok:
            self.audit_verification_failures.inc()
        self.audit_chain_valid.set(1 if ok else 0)


def cdf_at(points: Sequence[tuple[float, float]], value: float) -> float:
    """The share at or below ``value`` of a distribution given by ``(value, share)`` points.

    ``points`` are quantiles: values non-decreasing, shares rising from 0 to 1. Between two
    points the share is interpolated linearly; at a value several quantiles share (a point
    mass, e.g. many zeros) it is the highest of their shares, as ``le`` buckets count.
    """
    if not points or value < points[0][0]:
        return 0.0
    if value >= points[-1][0]:
        return 1.0
    index = max(i for i, (at, _) in enumerate(points) if at <= value)
    (low, low_share), (high, high_share) = points[index], points[index + 1]
    return low_share + (high_share - low_share) * (value - low) / (high - low)


class Stopwatch:
    """Seconds elapsed on a monotonic clock (for the ``seconds`` the hooks take)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the stopwatch was created."""
        return time.perf_counter() - self._start


# Series a family of each type exposes, beyond its own name (as PromQL sees them).
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One family of the catalogue: what ``/metrics`` declares and the docs table lists."""

    name: str  # as written in queries (counters with ``_total``)
    type: str
    labels: tuple[str, ...]
    documentation: str


def catalogue() -> tuple[MetricSpec, ...]:
    """Every radstream family, in declaration order (the one list docs and tests compare with).

    Built from a throw-away :class:`Metrics`, so it cannot drift from what processes export.
    """
    metrics = Metrics(CollectorRegistry(), process_collector=False)
    specs = []
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            kind = str(collector._type)  # private in prometheus_client, stable since 0.4
            name = collector._name
            specs.append(
                MetricSpec(
                    f"{name}_total" if kind == "counter" else name,
                    kind,
                    tuple(collector._labelnames),
                    collector._documentation,
                )
            )
        elif isinstance(collector, KnownGauge):
            specs.append(MetricSpec(collector.name, "gauge", (), collector.documentation))
    return tuple(specs)


def catalogue_table() -> str:
    """The catalogue as the Markdown table of ``docs/observability.md`` (a test compares)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    rows += [
        f"| `{spec.name}` | {spec.type} | {', '.join(spec.labels) or '—'} | {spec.documentation} |"
        for spec in catalogue()
    ]
    return "\n".join(rows) + "\n"


def metric_family_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every metric family the registry exports, as written (counters with ``_total``)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return frozenset(names)


def exported_series_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every series name a PromQL query may use (``_bucket``/``_sum``/``_count`` included)."""
    names: set[str] = set()
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        if family.type == "histogram":
            names.add(family.name)  # histogram_quantile users sometimes name the family
    return frozenset(names)


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition body and its content type, for any web framework's ``/metrics`` route."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` of ``registry`` on ``host:port`` from a daemon thread.

    Port 0 picks a free port (``server.server_port``); stop with ``server.shutdown()``.
    """
    return start_http_server(port, addr=host, registry=registry)


__all__ = [
    "BATCH_SIZE_BUCKETS",
    "END_TO_END_BUCKETS",
    "LATENCY_BUCKETS",
    "SCORE_BUCKETS",
    "SCORE_DELTA_BUCKETS",
    "STATISTIC_BUCKETS",
    "AuthReason",
    "DicomOutcome",
    "KnownGauge",
    "LagStatus",
    "MetricSpec",
    "Metrics",
    "ModelOutcome",
    "Outcome",
    "RateLimitScope",
    "Stopwatch",
    "SubmissionKind",
    "catalogue",
    "catalogue_table",
    "cdf_at",
    "exported_series_names",
    "metric_family_names",
    "render_metrics",
    "serve_metrics",
]
