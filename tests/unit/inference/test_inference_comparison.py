"""The comparison report: candidate against baseline on the images both scored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest

from schemas.errors import ErrorCode
from schemas.rollout import PairAgreement, RolloutMode
from streams.inference.batching import InferenceRequest, infer_batch
from streams.inference.comparison import LivePair, compare_versions, pair_live_outcomes
from streams.inference.rollout import in_canary
from tests.unit.inference.inference_builders import (
    NO_RULES,
    fake_registry,
    make_manifest,
    make_request,
    rollout_state,
)

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


class ConstantRunner:
    """A runner giving every image the same score, or failing every batch."""

    provider = "FakeExecutionProvider"

    def __init__(self, score: float | None) -> None:
        self._score = score

    def run_batch(self, inputs: np.ndarray) -> np.ndarray:
        """``score`` for each input; raises when there is none."""
        if self._score is None:
            raise RuntimeError("runner exploded")
        return np.full((inputs.shape[0], 1), self._score, dtype=np.float32)


def live_pairs(
    scores: dict[str, float | None], modes: str, *requests: InferenceRequest
) -> list[LivePair]:
    """Run fake-model versions scoring ``scores`` (None: failing) in ``modes``; pair them."""
    registry = fake_registry(
        *(
            (make_manifest(version=version, default=False), ConstantRunner(score))
            for version, score in scores.items()
        ),
        rollout=rollout_state(f"models:\n  fake-model:\n{modes}"),
    )
    outcomes = infer_batch(
        list(requests or [make_request(model_ids=("fake-model",))]),
        registry,
        NO_RULES,
        include_shadows=True,
    )

    def is_active(name: str, version: str) -> bool:
        return registry.mode(name, version).mode is RolloutMode.ACTIVE

    return pair_live_outcomes(outcomes, is_active)


@pytest.mark.requirement("RS-MOD-02")
class TestPairLiveOutcomes:
    def test_each_shadow_is_paired_with_the_active_version(self) -> None:
        """Decisions compared at the threshold; deltas are candidate minus active."""
        pairs = live_pairs(
            {"1.0.0": 0.8, "2.0.0": 0.3, "3.0.0": 0.9},
            "    1.0.0: {mode: active}\n    2.0.0: {mode: shadow}\n    3.0.0: {mode: shadow}\n",
        )
        assert [(p.model, p.baseline_version, p.candidate_version, p.agreement) for p in pairs] == [
            ("fake-model", "1.0.0", "2.0.0", PairAgreement.DISAGREE),
            ("fake-model", "1.0.0", "3.0.0", PairAgreement.AGREE),
        ]
        assert pairs[0].score_deltas == {"lesion": pytest.approx(-0.5)}
        assert pairs[1].score_deltas == {"lesion": pytest.approx(0.1)}

    @pytest.mark.parametrize(
        ("active", "shadow", "agreement"),
        [
            (0.8, None, PairAgreement.CANDIDATE_FAILED),
            (None, 0.8, PairAgreement.BASELINE_FAILED),
            (None, None, PairAgreement.BOTH_FAILED),
        ],
    )
    def test_failures_are_paired_without_deltas(
        self, active: float | None, shadow: float | None, agreement: PairAgreement
    ) -> None:
        """A version without a result on the image is a failed side of the pair."""
        (pair,) = live_pairs(
            {"1.0.0": active, "2.0.0": shadow},
            "    1.0.0: {mode: active}\n    2.0.0: {mode: shadow}\n",
        )
        assert (pair.agreement, pair.score_deltas) == (agreement, {})

    def test_a_canary_study_pairs_the_canary_with_the_active_in_shadow(self) -> None:
        """On a canary study the canary is published; the active version is still baseline."""
        assert in_canary("fake-model", "1.2.3", 99)  # the study UID make_request gives
        (pair,) = live_pairs(
            {"1.0.0": 0.8, "2.0.0": 0.7},
            "    1.0.0: {mode: active}\n    2.0.0: {mode: canary, canary_percent: 99}\n",
        )
        assert (pair.baseline_version, pair.candidate_version) == ("1.0.0", "2.0.0")
        assert pair.agreement is PairAgreement.AGREE

    def test_only_outcomes_on_the_same_image_are_paired(self) -> None:
        """Two images: one pair each; a pinned version runs alone and pairs with nothing."""
        pairs = live_pairs(
            {"1.0.0": 0.8, "2.0.0": 0.3},
            "    1.0.0: {mode: active}\n    2.0.0: {mode: shadow}\n",
            make_request(model_ids=("fake-model",)),
            make_request(model_ids=("fake-model@2.0.0",)),
            make_request(model_ids=("fake-model",)),
        )
        assert [p.agreement for p in pairs] == [PairAgreement.DISAGREE] * 2

    def test_no_pair_without_the_active_version(self) -> None:
        """Outcomes of other versions only (or unresolved ids) yield no pair."""
        pairs = live_pairs(
            {"1.0.0": 0.8, "2.0.0": 0.3},
            "    1.0.0: {mode: active}\n    2.0.0: {mode: staged}\n",
            make_request(model_ids=("fake-model@2.0.0", "unknown-model")),
        )
        assert pairs == []
