"""Micro-batching: one run per model per batch, failures stay with the item that caused them."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from schemas.errors import ErrorCode, InferenceError
from schemas.events import Stage
from streams.inference.batching import InferenceOutcome, InferenceRequest, decide, infer_batch
from streams.inference.manifest import OutputSpec
from streams.inference.registry import ModelRegistry, RegisteredModel
from streams.inference.routing import RoutingRules
from tests.unit.inference.inference_builders import (
    NO_RULES,
    FakeRunner,
    fake_registry,
    make_event,
    make_manifest,
    make_request,
)

pytestmark = pytest.mark.requirement("RS-INF-05")

FIXED_NOW = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
CT_RULES = RoutingRules.parse("rules:\n  - modality: CT\n    models: [fake-model]\n")


def _codes(outcomes: list[InferenceOutcome]) -> list[ErrorCode | None]:
    return [outcome.error.code if outcome.error else None for outcome in outcomes]


def _single(runner: FakeRunner | None = None) -> tuple[ModelRegistry, FakeRunner]:
    runner = runner or FakeRunner()
    return fake_registry((make_manifest(), runner)), runner


class TestBatchedRuns:
    """Grouping by model."""

    def test_one_run_per_model_per_batch(self) -> None:
        """Five images for one model are one runtime call with five inputs."""
        registry, runner = _single()
        outcomes = infer_batch([make_request() for _ in range(5)], registry, CT_RULES)
        assert runner.batch_sizes == [5]
        assert all(outcome.ok for outcome in outcomes)
        assert {outcome.result.batch_size for outcome in outcomes if outcome.result} == {5}

    def test_two_models_run_once_each(self) -> None:
        """An image routed to two models gives two results and each model runs once."""
        first, second = FakeRunner(), FakeRunner()
        registry = fake_registry(
            (make_manifest(name="model-a"), first), (make_manifest(name="model-b"), second)
        )
        requests = [make_request(model_ids=("model-a", "model-b")) for _ in range(3)]
        outcomes = infer_batch(requests, registry, NO_RULES)
        assert (first.batch_sizes, second.batch_sizes) == ([3], [3])
        assert [o.model_id for o in outcomes] == ["model-a@1.0.0", "model-b@1.0.0"] * 3

    def test_outcomes_follow_input_order(self) -> None:
        """Outcome i belongs to request i."""
        registry, _ = _single()
        requests = [make_request() for _ in range(4)]
        outcomes = infer_batch(requests, registry, CT_RULES)
        assert [o.request for o in outcomes] == requests

    def test_two_ids_for_the_same_version_give_one_result(self) -> None:
        """`fake-model` and `fake-model@1.0.0` name one version: one result."""
        registry, runner = _single()
        request = make_request(model_ids=("fake-model", "fake-model@1.0.0"))
        assert len(infer_batch([request], registry, NO_RULES)) == 1
        assert runner.batch_sizes == [1]

    def test_empty_batch_gives_no_outcomes(self) -> None:
        """Nothing in, nothing out, nothing run."""
        registry, runner = _single()
        assert infer_batch([], registry, CT_RULES) == []
        assert runner.batch_sizes == []

    def test_scores_and_decision_come_from_the_runner(self) -> None:
        """The fake scores the mean of the preprocessed input; 0.5 reaches the threshold."""
        registry, _ = _single()
        ramp = np.arange(16, dtype=np.float32).reshape(4, 4)
        spike = np.zeros((4, 4), dtype=np.float32)
        spike[0, 0] = 1.0
        outcomes = infer_batch([make_request(ramp), make_request(spike)], registry, CT_RULES)
        results = [o.result for o in outcomes if o.result]
        assert [r.scores["lesion"] for r in results] == pytest.approx([0.5, 0.0625])
        assert [r.decision for r in results] == ["lesion", "no_finding"]


class TestPartialFailure:
    """Errors inside a batch fail only the items that caused them."""

    def test_bad_pixels_fail_alone(self) -> None:
        """A NaN image fails preprocessing; the others run as a batch of two."""
        registry, runner = _single()
        bad = np.full((4, 4), np.nan, dtype=np.float32)
        outcomes = infer_batch(
            [make_request(), make_request(bad), make_request()], registry, CT_RULES
        )
        assert _codes(outcomes) == [None, ErrorCode.INFERENCE_PREPROCESSING_FAILED, None]
        assert runner.batch_sizes == [2]

    def test_unknown_model_fails_alone(self) -> None:
        """An unregistered id fails that image with MODEL_NOT_FOUND."""
        registry, _ = _single()
        requests = [make_request(), make_request(model_ids=("ghost",)), make_request()]
        outcomes = infer_batch(requests, registry, CT_RULES)
        assert _codes(outcomes) == [None, ErrorCode.MODEL_NOT_FOUND, None]
        assert outcomes[1].model_id == "ghost"

    def test_unknown_model_does_not_block_the_other_requested_model(self) -> None:
        """With one good and one unknown id, the good one still produces a result."""
        registry, _ = _single()
        outcomes = infer_batch(
            [make_request(model_ids=("ghost", "fake-model"))], registry, NO_RULES
        )
        assert _codes(outcomes) == [ErrorCode.MODEL_NOT_FOUND, None]

    def test_refused_model_fails_its_items_only(self) -> None:
        """Images for a refused model fail with its code; images for others succeed."""
        refused = RegisteredModel(
            make_manifest(name="tampered"),
            None,
            InferenceError(ErrorCode.MODEL_CHECKSUM_MISMATCH, "weights differ"),
        )
        good = RegisteredModel(make_manifest(), FakeRunner())
        registry = ModelRegistry([refused, good])
        requests = [make_request(model_ids=("tampered",)), make_request()]
        outcomes = infer_batch(requests, registry, CT_RULES)
        assert _codes(outcomes) == [ErrorCode.MODEL_CHECKSUM_MISMATCH, None]

    def test_unroutable_image_fails_alone(self) -> None:
        """An MR image with no rule and no request fails with MODEL_NO_ROUTE."""
        registry, _ = _single()
        outcomes = infer_batch([make_request(modality="MR"), make_request()], registry, CT_RULES)
        assert _codes(outcomes) == [ErrorCode.MODEL_NO_ROUTE, None]
        assert outcomes[0].model_id is None

    def test_incompatible_modality_fails_alone(self) -> None:
        """Asking a CT model for an MR image is MODEL_INPUT_INCOMPATIBLE."""
        registry, _ = _single()
        requests = [make_request(modality="MR", model_ids=("fake-model",)), make_request()]
        outcomes = infer_batch(requests, registry, CT_RULES)
        assert _codes(outcomes) == [ErrorCode.MODEL_INPUT_INCOMPATIBLE, None]

    def test_missing_modality_is_incompatible_with_a_ct_model(self) -> None:
        """A PNG (no modality) cannot go to a model that declares CT."""
        registry, _ = _single()
        outcome = infer_batch(
            [make_request(modality=None, model_ids=("fake-model",))], registry, NO_RULES
        )[0]
        assert outcome.error is not None
        assert "images without a modality" in outcome.error.reason

    def test_model_without_modalities_accepts_any_image(self) -> None:
        """An empty modality list accepts every image, including ones without a modality."""
        data_input = make_manifest().input.model_copy(update={"modalities": ()})
        registry = fake_registry(
            (make_manifest().model_copy(update={"input": data_input}), FakeRunner())
        )
        outcomes = infer_batch(
            [make_request(modality=None, model_ids=("fake-model",))], registry, NO_RULES
        )
        assert outcomes[0].ok


class TestRuntimeFallback:
    """A failing batched run is retried item by item."""

    @staticmethod
    def _poison(inputs: np.ndarray) -> bool:
        # The poison image is flat: min-max turns it into all zeros, no other input is.
        return bool((inputs.reshape(inputs.shape[0], -1).max(axis=1) == 0.0).any())

    def _poisoned_batch(self) -> tuple[list[InferenceOutcome], FakeRunner]:
        runner = FakeRunner(fail_when=self._poison)
        registry = fake_registry((make_manifest(), runner))
        poison = np.full((4, 4), 7.0, dtype=np.float32)
        requests = [make_request(), make_request(poison), make_request()]
        return infer_batch(requests, registry, CT_RULES), runner

    def test_only_the_culprit_fails(self) -> None:
        """The batch fails, the retry isolates the one input that makes the runner raise."""
        outcomes, _ = self._poisoned_batch()
        assert _codes(outcomes) == [None, ErrorCode.INFERENCE_FAILED, None]

    def test_retry_runs_items_one_by_one(self) -> None:
        """After the failed batch of three, each item runs alone."""
        outcomes, runner = self._poisoned_batch()
        assert runner.batch_sizes == [3, 1, 1, 1]
        assert [o.result.batch_size for o in outcomes if o.result] == [1, 1]

    def test_foreign_exceptions_are_translated(self) -> None:
        """A runner's RuntimeError becomes INFERENCE_FAILED with the type, not the message."""
        outcomes, _ = self._poisoned_batch()
        assert outcomes[1].error is not None
        assert outcomes[1].error.reason == "model runner failed: RuntimeError"

    def test_wrong_output_shape_fails_the_batch_items(self) -> None:
        """A runner returning one row for two inputs fails both, with INFERENCE_FAILED."""

        class OneRow(FakeRunner):
            def run_batch(self, inputs: np.ndarray) -> np.ndarray:
                return np.zeros((1,))

        registry = fake_registry((make_manifest(), OneRow()))
        outcomes = infer_batch([make_request(), make_request()], registry, CT_RULES)
        assert _codes(outcomes) == [ErrorCode.INFERENCE_FAILED] * 2

    def test_non_finite_score_fails_only_its_row(self) -> None:
        """A NaN score for one image fails that image; the other row is a result."""

        class NanSecond(FakeRunner):
            def run_batch(self, inputs: np.ndarray) -> np.ndarray:
                return np.array([[0.2], [np.nan]])

        registry = fake_registry((make_manifest(), NanSecond()))
        outcomes = infer_batch([make_request(), make_request()], registry, CT_RULES)
        assert _codes(outcomes) == [None, ErrorCode.INFERENCE_FAILED]

    def test_wrong_label_count_fails_the_row(self) -> None:
        """Two scores for a one-label model is not a valid result."""

        class TwoScores(FakeRunner):
            def run_batch(self, inputs: np.ndarray) -> np.ndarray:
                return np.zeros((inputs.shape[0], 2))

        registry = fake_registry((make_manifest(), TwoScores()))
        assert _codes(infer_batch([make_request()], registry, CT_RULES)) == [
            ErrorCode.INFERENCE_FAILED
        ]


class TestContractViolations:
    """A result that cannot be built as an event fails only its item."""

    def test_overlong_correlation_id_fails_alone(self) -> None:
        """A correlation id over 64 characters makes EVENT_MALFORMED for that image only."""
        registry, _ = _single()
        bad = InferenceRequest(make_event(), "c" * 65, np.ones((4, 4), dtype=np.float32))
        outcomes = infer_batch([make_request(), bad], registry, CT_RULES)
        assert _codes(outcomes) == [None, ErrorCode.EVENT_MALFORMED]
        assert outcomes[1].error is not None
        assert outcomes[1].error.reason.endswith("correlation_id")


class TestDecisionAndRejection:
    """Decisions from thresholds and rejections from failures."""

    OUTPUT = OutputSpec.model_validate(
        {
            "labels": ("nodule", "mass"),
            "score_meaning": "probabilities",
            "thresholds": {"nodule": 0.5, "mass": 0.8},
        }
    )

    @pytest.mark.parametrize(
        ("scores", "decision"),
        [
            ({"nodule": 0.5, "mass": 0.79}, "nodule"),
            ({"nodule": 0.9, "mass": 0.8}, "nodule+mass"),
            ({"nodule": 0.1, "mass": 0.1}, "no_finding"),
        ],
    )
    def test_decide(self, scores: dict[str, float], decision: str) -> None:
        """Labels at or above their own threshold, in declared order; else the negative."""
        assert decide(scores, self.OUTPUT) == decision

    def test_rejection_carries_code_reason_and_model(self) -> None:
        """A failed outcome becomes an ImageRejected of the inference stage."""
        registry, _ = _single()
        request = make_request(model_ids=("ghost",))
        outcome = infer_batch([request], registry, NO_RULES)[0]
        rejected = outcome.rejection(clock=lambda: FIXED_NOW)
        assert (rejected.stage, rejected.error_code, rejected.model_id) == (
            Stage.INFERENCE,
            ErrorCode.MODEL_NOT_FOUND,
            "ghost",
        )
        assert rejected.event_id == request.event.event_id
        assert rejected.rejected_at == FIXED_NOW
        assert rejected.retryable is False

    def test_successful_outcome_has_no_rejection(self) -> None:
        """Asking a result for its rejection is a programming error."""
        registry, _ = _single()
        outcome = infer_batch([make_request()], registry, CT_RULES)[0]
        with pytest.raises(ValueError, match="no rejection"):
            outcome.rejection()
