"""The inference stage with the shipped models: routing across models and the per-model hook."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Generic, ParamSpec, TypeVar

import pytest

from schemas.events import ImageRejected, InferenceCompleted, ShadowOutcome
from schemas.rollout import PairAgreement
from schemas.settings import ValidationSettings, load_settings
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.kafka import Outgoing
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.router import arrival_for_file
from streams.stages.common import ImageReader
from streams.stages.inference import InferenceStage, ModelComparisonHook
from streams.stages.validation import validated_event
from streams.topics import TopicKey
from streams.validation import load_clinical_rules, validate_image
from streams.validation.validator import ValidationAccepted

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
LIMITS = ValidationSettings()


P = ParamSpec("P")
T = TypeVar("T")


class CallRecorder(Generic[P, T]):
    """A hook that keeps each call as ``record(*args, **kwargs)``: it takes what ``record`` takes.

    With a dataclass as ``record`` the hook's signature is the dataclass's fields, so the
    production hook protocol is not copied here.
    """

    def __init__(self, record: Callable[P, T]) -> None:
        self._record = record
        self.calls: list[T] = []

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        self.calls.append(self._record(*args, **kwargs))


@dataclass(frozen=True)
class Observed:
    """One call of the per-model hook (:class:`ModelOutcomeHook`)."""

    model: str
    model_version: str
    outcome: str
    _: KW_ONLY
    shadow: bool
    scores: Mapping[str, float] | None
    statistics: Mapping[str, float] | None


def validated_message(relative: str, offset: int) -> Incoming:
    """The images.validated message the validation stage publishes for a bundled sample."""
    path = SAMPLES / relative
    arrival = arrival_for_file(path, source="demo")
    outcome = validate_image(
        path.read_bytes(),
        limits=LIMITS,
        rules=load_clinical_rules(load_settings().validation.clinical_rules_file),
    )
    assert isinstance(outcome, ValidationAccepted)
    value = validated_event(arrival, outcome).model_dump_json().encode()
    return Incoming("t.images.validated", 0, offset, b"k", value)


@pytest.fixture
def stage_and_hook(
    reference_registry: ModelRegistry, reference_rules: RoutingRules
) -> tuple[InferenceStage, CallRecorder[..., Observed]]:
    hook = CallRecorder(Observed)
    reader = ImageReader([SAMPLES], LIMITS.max_file_bytes, RetryPolicy(max_attempts=1))
    stage = InferenceStage(
        reader, reference_registry, reference_rules, LIMITS, on_model_outcome=hook
    )
    return stage, hook


class TestModelOutcomes:
    async def test_a_real_ct_goes_to_both_models(
        self, stage_and_hook: tuple[InferenceStage, CallRecorder[..., Observed]]
    ) -> None:
        """One CT image: a quality result published, the lesion model's refusal rejected."""
        stage, hook = stage_and_hook
        out = await stage.handle([validated_message("dicom/ct_small.dcm", 1)])
        by_topic = {o.topic: o.value for o in out}
        assert isinstance(by_topic[TopicKey.INFERENCE_RESULTS], InferenceCompleted)
        rejected = by_topic[TopicKey.IMAGES_REJECTED]
        assert isinstance(rejected, ImageRejected)
        assert (rejected.model_id, rejected.error_code.value) == (
            "lesion-detector@1.2.0",
            "MODEL_INPUT_OUT_OF_DISTRIBUTION",
        )
        assert [(c.model, c.model_version, c.outcome, c.shadow) for c in hook.calls] == [
            ("lesion-detector", "1.2.0", "out_of_distribution", False),
            ("image-quality", "1.0.0", "scored", False),
        ]
        assert hook.calls[0].scores is None
        assert hook.calls[1].scores is not None
        assert set(hook.calls[1].scores) == {"noise"}
        assert all(
            set(c.statistics or {}) == {"mean", "std", "fraction_low", "fraction_high", "gradient"}
            for c in hook.calls
        )

    async def test_images_that_reach_no_model_are_not_reported(
        self, stage_and_hook: tuple[InferenceStage, CallRecorder[..., Observed]]
    ) -> None:
        """An NM image has no route: rejected, and no model version saw it."""
        stage, hook = stage_and_hook
        out = await stage.handle([validated_message("dicom/nm_jpeg2000.dcm", 2)])
        assert [o.value.error_code.value for o in out if isinstance(o.value, ImageRejected)] == [
            "MODEL_NO_ROUTE"
        ]
        assert hook.calls == []


async def ct_with_rollout(
    tmp_path: Path,
    rules: RoutingRules,
    lesion_modes: str,
    on_model_comparison: ModelComparisonHook | None = None,
) -> list[Outgoing]:
    """What the stage publishes for the bundled CT image, with the shipped registry and the
    lesion-detector versions in ``lesion_modes``."""
    registry_dir = tmp_path / "registry"
    shutil.copytree(load_settings().inference.model_registry_dir, registry_dir)
    (registry_dir / "rollout.yaml").write_text(
        "models:\n  image-quality:\n    1.0.0: {mode: active}\n"
        f"  lesion-detector:\n{lesion_modes}"
    )
    reader = ImageReader([SAMPLES], LIMITS.max_file_bytes, RetryPolicy(max_attempts=1))
    stage = InferenceStage(
        reader,
        ModelRegistry.load(registry_dir),
        rules,
        LIMITS,
        on_model_comparison=on_model_comparison,
    )
    return await stage.handle([validated_message("dicom/ct_small.dcm", 1)])


def model_of(value: object) -> str | None:
    """The ``name@version`` a published result or rejection is about."""
    if isinstance(value, InferenceCompleted):
        return f"{value.model.name}@{value.model.version}"
    assert isinstance(value, ImageRejected)
    return value.model_id


class TestShadowRouting:
    async def test_a_shadow_result_goes_to_the_shadow_topic_only(
        self, tmp_path: Path, reference_rules: RoutingRules
    ) -> None:
        """A CT image: the active version's refusal is published, the shadow's score is not."""
        out = await ct_with_rollout(
            tmp_path,
            reference_rules,
            "    1.2.0: {mode: active}\n    1.1.0: {mode: shadow}\n",
        )
        published = [o for o in out if o.topic is not TopicKey.INFERENCE_SHADOW]
        shadows = [o for o in out if o.topic is TopicKey.INFERENCE_SHADOW]
        assert sorted((o.topic.value, str(model_of(o.value))) for o in published) == [
            ("images.rejected", "lesion-detector@1.2.0"),
            ("inference.results", "image-quality@1.0.0"),
        ]
        assert len(shadows) == 1
        shadow = shadows[0].value
        assert isinstance(shadow, ShadowOutcome)
        assert shadow.rejection is None
        assert shadow.result is not None
        assert model_of(shadow.result) == "lesion-detector@1.1.0"
        assert shadows[0].key == shadow.result.message_key()  # the study, as published ones

    async def test_a_shadow_refusal_is_a_shadow_rejection(
        self, tmp_path: Path, reference_rules: RoutingRules
    ) -> None:
        """The guarded version in shadow refuses the CT: coded, but never on images.rejected."""
        out = await ct_with_rollout(
            tmp_path,
            reference_rules,
            "    1.1.0: {mode: active}\n    1.2.0: {mode: shadow}\n",
        )
        assert [o.topic for o in out].count(TopicKey.IMAGES_REJECTED) == 0
        assert sorted(
            str(model_of(o.value)) for o in out if o.topic is TopicKey.INFERENCE_RESULTS
        ) == [
            "image-quality@1.0.0",
            "lesion-detector@1.1.0",
        ]
        (shadow,) = [o.value for o in out if o.topic is TopicKey.INFERENCE_SHADOW]
        assert isinstance(shadow, ShadowOutcome)
        assert shadow.result is None
        assert shadow.rejection is not None
        assert (shadow.rejection.model_id, shadow.rejection.error_code.value) == (
            "lesion-detector@1.2.0",
            "MODEL_INPUT_OUT_OF_DISTRIBUTION",
        )


@dataclass(frozen=True)
class Compared:
    """One call of the comparison hook (:class:`ModelComparisonHook`)."""

    model: str
    baseline_version: str
    candidate_version: str
    agreement: PairAgreement
    _: KW_ONLY
    score_deltas: Mapping[str, float]


@pytest.mark.requirement("RS-MOD-02")
class TestLiveComparison:
    @pytest.mark.parametrize(
        ("lesion_modes", "expected"),
        [
            pytest.param(
                "    1.2.0: {mode: active}\n    1.1.0: {mode: shadow}\n",
                [
                    Compared(
                        "lesion-detector",
                        "1.2.0",
                        "1.1.0",
                        PairAgreement.BASELINE_FAILED,
                        score_deltas={},
                    )
                ],
                id="the guarded active refuses the CT, its shadow scores it",
            ),
            pytest.param(
                "    1.2.0: {mode: active}\n    1.1.0: {mode: staged}\n",
                [],
                id="one version per model runs: no pair",
            ),
        ],
    )
    async def test_versions_on_the_same_image_are_reported_as_pairs(
        self,
        tmp_path: Path,
        reference_rules: RoutingRules,
        lesion_modes: str,
        expected: list[Compared],
    ) -> None:
        """A real CT goes to both models; only lesion-detector has a second version running."""
        hook = CallRecorder(Compared)
        await ct_with_rollout(tmp_path, reference_rules, lesion_modes, on_model_comparison=hook)
        assert hook.calls == expected
