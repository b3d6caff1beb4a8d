"""The comparison report: candidate against baseline on the images both scored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from schemas.errors import ErrorCode
from streams.inference.comparison import compare_versions

BASE, CAND = "m@1.0", "m@2.0"


@dataclass(frozen=True)
class Row:
    """A stored result as the results repository returns it (the fields compared)."""

    event_id: uuid.UUID
    model_name: str
    model_version: str
    decision: str
    scores: dict[str, float] = field(default_factory=dict)
    inference_seconds: float = 0.01


@dataclass(frozen=True)
class Failure:
    """A stored rejection naming a model version."""

    event_id: uuid.UUID
    model_name: str | None
    model_version: str | None
    error_code: str | None


def result(event: uuid.UUID, model_id: str, decision: str, score: float, seconds: float) -> Row:
    name, version = model_id.split("@")
    return Row(event, name, version, decision, {"lesion": score}, seconds)


def failure(event: uuid.UUID, model_id: str, code: str) -> Failure:
    name, version = model_id.split("@")
    return Failure(event, name, version, code)


EVENTS = [uuid.UUID(int=i) for i in range(1, 7)]


class TestCompareVersions:
    def test_agreement_is_measured_on_paired_images(self) -> None:
        """3 of 4 paired images agree; an image only one version scored is not paired."""
        rows = [
            *(result(e, BASE, "lesion", 0.8, 0.01) for e in EVENTS[:4]),
            *(result(e, CAND, "lesion", 0.9, 0.02) for e in EVENTS[:3]),
            result(EVENTS[3], CAND, "no_finding", 0.2, 0.02),
            result(EVENTS[4], BASE, "lesion", 0.7, 0.01),
        ]
        report = compare_versions(BASE, CAND, rows)
        assert report.paired_images == 4
        assert report.agreement == pytest.approx(0.75)
        assert [(d.baseline, d.candidate, d.images) for d in report.decisions] == [
            ("lesion", "lesion", 3),
            ("lesion", "no_finding", 1),
        ]
        assert (report.baseline.results, report.candidate.results) == (5, 4)

    def test_score_deltas_are_candidate_minus_baseline(self) -> None:
        """Mean, mean absolute, p95 and max of the per-image score differences."""
        rows = [
            result(EVENTS[0], BASE, "x", 0.5, 0.01),
            result(EVENTS[0], CAND, "x", 0.7, 0.01),
            result(EVENTS[1], BASE, "x", 0.5, 0.01),
            result(EVENTS[1], CAND, "x", 0.1, 0.01),
        ]
        (delta,) = compare_versions(BASE, CAND, rows).score_deltas
        assert delta.label == "lesion"
        assert delta.pairs == 2
        assert delta.mean_delta == pytest.approx(-0.1)
        assert delta.mean_abs_delta == pytest.approx(0.3)
        assert delta.max_abs_delta == pytest.approx(0.4)
        assert 0.2 <= delta.p95_abs_delta <= 0.4

    def test_failures_by_code_and_rate(self) -> None:
        """Failures count once per image; an image that later got a result is not a failure."""
        rows = [result(e, CAND, "x", 0.5, 0.01) for e in EVENTS[:3]]
        failures = [
            failure(EVENTS[3], CAND, "MODEL_INPUT_OUT_OF_DISTRIBUTION"),
            failure(EVENTS[4], CAND, "INFERENCE_FAILED"),
            failure(EVENTS[4], CAND, "INFERENCE_FAILED"),
            failure(EVENTS[0], CAND, "INFERENCE_FAILED"),  # retried, then scored
            failure(EVENTS[5], BASE, "INFERENCE_FAILED"),
            Failure(EVENTS[5], None, None, "MODEL_NO_ROUTE"),  # no model: ignored
        ]
        report = compare_versions(BASE, CAND, rows, failures)
        assert report.candidate.failures == 2
        assert report.candidate.failures_by_code == {
            "INFERENCE_FAILED": 1,
            "MODEL_INPUT_OUT_OF_DISTRIBUTION": 1,
        }
        assert report.candidate.failure_rate == pytest.approx(2 / 5)
        assert (report.baseline.failures, report.baseline.failure_rate) == (1, 1.0)

    def test_latency_percentiles_per_version(self) -> None:
        """p50 and p95 of inference_seconds of each version's results."""
        rows = [result(uuid.uuid4(), CAND, "x", 0.5, s / 100) for s in range(1, 101)]
        latency = compare_versions(BASE, CAND, rows).candidate.latency
        assert latency.count == 100
        assert latency.p50_seconds == pytest.approx(0.505)
        assert latency.p95_seconds == pytest.approx(0.9505)

    def test_other_versions_are_ignored(self) -> None:
        """Rows of a third version do not enter the report."""
        rows = [
            result(EVENTS[0], "m@9.9", "x", 0.5, 0.01),
            result(EVENTS[0], "other@1.0", "x", 0.5, 0.01),
        ]
        report = compare_versions(BASE, CAND, rows, [failure(EVENTS[1], "m@9.9", "TIMEOUT")])
        assert (report.baseline.results, report.candidate.results, report.paired_images) == (
            0,
            0,
            0,
        )
        assert report.candidate.failures == 0

    def test_empty_input_gives_an_empty_report(self) -> None:
        """No rows: no pairs, no agreement, no latency, no rates (never a division by zero)."""
        report = compare_versions(BASE, CAND, [])
        assert report.agreement is None
        assert report.candidate.failure_rate is None
        assert report.candidate.latency.p50_seconds is None
        assert report.score_deltas == ()

    def test_a_redelivered_result_counts_once(self) -> None:
        """Two results of one version for one image: the last one given counts."""
        rows = [
            result(EVENTS[0], BASE, "lesion", 0.9, 0.01),
            result(EVENTS[0], CAND, "lesion", 0.9, 0.01),
            result(EVENTS[0], CAND, "no_finding", 0.1, 0.01),
        ]
        report = compare_versions(BASE, CAND, rows)
        assert (report.candidate.results, report.paired_images, report.agreement) == (1, 1, 0.0)


class TestRepositoryRows:
    def test_repository_read_models_are_accepted_as_they_are(self) -> None:
        """InferenceResultRecord and LifecycleEntry rows feed the report without adapters."""
        from bench.sink_events import BASE_TIME, make_rejection, make_result  # noqa: PLC0415
        from sinks.records import InferenceResultRecord, LifecycleEntry  # noqa: PLC0415
        from sinks.repositories import result_row  # noqa: PLC0415

        event = uuid.uuid4()
        rows = [
            InferenceResultRecord.model_validate(
                {
                    **result_row(make_result(event_id=event, version=version)),
                    "stored_at": BASE_TIME,
                    "verified_by": None,
                    "verified_at": None,
                    "verification_note": None,
                }
            )
            for version in ("1.0", "2.0")
        ]
        rejected = LifecycleEntry.rejected(
            make_rejection(model_id="chest-xray@2.0", code=ErrorCode.INFERENCE_FAILED)
        )
        report = compare_versions("chest-xray@1.0", "chest-xray@2.0", rows, [rejected])
        assert (report.paired_images, report.agreement) == (1, 1.0)
        assert report.candidate.failures_by_code == {"INFERENCE_FAILED": 1}
