"""Rollout modes: the state file, which versions run for an event, and mode transitions."""

from __future__ import annotations

import uuid

import pytest

from schemas.errors import ConflictError, ErrorCode, InferenceError
from schemas.rollout import RolloutMode
from streams.inference.rollout import (
    ACTIVE,
    CANARY_BUCKETS,
    RETIRED,
    SHADOW,
    STAGED,
    RolloutChange,
    RolloutState,
    Selection,
    VersionRollout,
    apply_changes,
    canary_bucket,
    effective_modes,
    in_canary,
    mode_problems,
    plan_change,
    select_versions,
)

pytestmark = pytest.mark.requirement("RS-MOD-02")


def canary(percent: int) -> VersionRollout:
    return VersionRollout(mode=RolloutMode.CANARY, canary_percent=percent)


STUDIES = [f"1.2.826.0.1.{i}" for i in range(4000)]


class TestStateFile:
    """rollout.yaml: strict parsing and a stable dump."""

    def test_parse_and_dump_round_trip(self) -> None:
        """Dumped text parses back to the same state, models and versions sorted."""
        state = RolloutState.parse(
            "models:\n  m:\n"
            "    '2.0': {mode: canary, canary_percent: 5}\n"
            "    '1.0': {mode: active}\n"
        )
        text = state.dump()
        assert text.startswith("# Rollout mode")
        assert text.index("'1.0'") < text.index("'2.0'")
        assert RolloutState.parse(text) == state

    def test_empty_file_is_an_empty_state(self) -> None:
        """An empty file lists no model (every model keeps the legacy rule)."""
        assert RolloutState.parse("") == RolloutState()

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("models:\n  m:\n    '1.0': {mode: live}\n", "mode"),
            ("models:\n  m:\n    '1.0': {mode: canary}\n", "canary_percent is required"),
            ("models:\n  m:\n    '1.0': {mode: active, canary_percent: 5}\n", "only for a canary"),
            ("models:\n  m:\n    '1.0': {mode: canary, canary_percent: 100}\n", "canary_percent"),
            ("models:\n  M!:\n    '1.0': {mode: active}\n", "models"),
            ("models: [", "ParserError"),
            ("other: {}\n", "other"),
        ],
    )
    def test_invalid_files_are_refused(self, text: str, fragment: str) -> None:
        """Every way the file can be wrong is MODEL_LOAD_FAILED with a reason."""
        with pytest.raises(InferenceError) as caught:
            RolloutState.parse(text)
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED
        assert fragment in caught.value.reason

    def test_with_modes_replaces_one_model(self) -> None:
        """with_modes sets one model's versions and keeps the others."""
        state = RolloutState(models={"a": {"1": ACTIVE}, "b": {"1": ACTIVE}})
        updated = state.with_modes("a", {"1": STAGED, "2": ACTIVE})
        assert updated.models == {"a": {"1": STAGED, "2": ACTIVE}, "b": {"1": ACTIVE}}


class TestEffectiveModes:
    """Which mode each registered version is in."""

    def test_unlisted_model_follows_the_manifest_default(self) -> None:
        """Legacy registries: default true is active, the rest staged."""
        assert effective_modes("m", {"1": False, "2": True}, RolloutState()) == {
            "1": STAGED,
            "2": ACTIVE,
        }

    def test_listed_model_ignores_manifest_defaults(self) -> None:
        """Once rollout.yaml lists a model, it alone decides; unlisted versions are staged."""
        state = RolloutState(models={"m": {"1": ACTIVE}})
        assert effective_modes("m", {"1": False, "2": True}, state) == {"1": ACTIVE, "2": STAGED}

    def test_versions_not_registered_are_ignored(self) -> None:
        """A listed version whose files are gone has no mode."""
        state = RolloutState(models={"m": {"1": ACTIVE, "9": SHADOW}})
        assert effective_modes("m", {"1": False}, state) == {"1": ACTIVE}

    @pytest.mark.parametrize(
        ("modes", "problem"),
        [
            ({"1": STAGED}, "0 active versions"),
            ({"1": ACTIVE, "2": ACTIVE}, "2 active versions"),
            ({"1": ACTIVE, "2": canary(5), "3": canary(5)}, "2 canary versions"),
        ],
    )
    def test_problems_that_stop_the_bare_name(
        self, modes: dict[str, VersionRollout], problem: str
    ) -> None:
        """Zero or several active versions, or two canaries, cannot serve the bare name."""
        assert any(problem in p for p in mode_problems("m", modes))


class TestCanaryBuckets:
    """The deterministic choice of studies for a canary."""

    def test_bucket_is_stable(self) -> None:
        """The same model and study always land in the same bucket."""
        assert canary_bucket("m", "1.2.3") == canary_bucket("m", "1.2.3")
        assert 0 <= canary_bucket("m", "1.2.3") < CANARY_BUCKETS

    def test_share_is_close_to_the_percentage(self) -> None:
        """Over 4000 studies a 10 % canary gets 10 % +- 1.5 % (about 3 standard errors)."""
        share = sum(in_canary("m", s, 10) for s in STUDIES) / len(STUDIES)
        assert abs(share - 0.10) < 0.015

    def test_raising_the_percentage_only_adds_studies(self) -> None:
        """Every study in the 10 % canary is still in it at 20 %."""
        ten = {s for s in STUDIES if in_canary("m", s, 10)}
        twenty = {s for s in STUDIES if in_canary("m", s, 20)}
        assert ten < twenty

    def test_models_draw_independent_studies(self) -> None:
        """Two models' canaries do not pick the same studies."""
        first = {s for s in STUDIES if in_canary("a", s, 10)}
        second = {s for s in STUDIES if in_canary("b", s, 10)}
        assert len(first & second) < len(first) / 3


class TestSelection:
    """Which versions run, and which one is published, for one event."""

    def test_active_alone_is_published(self) -> None:
        """Only an active version: it is published, nothing runs in shadow."""
        assert select_versions("m", {"1": ACTIVE, "0": STAGED}, "s") == Selection("1")

    def test_shadows_run_beside_the_active_version(self) -> None:
        """Every shadow runs on every event, sorted by version; retired and staged do not."""
        modes = {"1": ACTIVE, "3": SHADOW, "2": SHADOW, "0": RETIRED, "9": STAGED}
        assert select_versions("m", modes, "s") == Selection("1", ("2", "3"))

    def test_canary_study_publishes_the_canary_and_shadows_the_active(self) -> None:
        """Inside the canary's share the canary is published and the active runs beside it."""
        study = next(s for s in STUDIES if in_canary("m", s, 50))
        modes = {"1": ACTIVE, "2": canary(50), "3": SHADOW}
        assert select_versions("m", modes, study) == Selection("2", ("1", "3"))

    def test_other_studies_stay_on_the_active_version(self) -> None:
        """Outside the canary's share the active version is published and the canary idle."""
        study = next(s for s in STUDIES if not in_canary("m", s, 50))
        assert select_versions("m", {"1": ACTIVE, "2": canary(50)}, study) == Selection("1")

    def test_all_images_of_a_study_go_the_same_way(self) -> None:
        """The choice depends on the study key only."""
        modes = {"1": ACTIVE, "2": canary(30)}
        assert len({select_versions("m", modes, "1.2.3").published for _ in range(20)}) == 1

    def test_unservable_modes_raise(self) -> None:
        """Without one active version the bare name cannot be served."""
        with pytest.raises(InferenceError, match="0 active versions"):
            select_versions("m", {"1": SHADOW}, "s")


class TestTransitions:
    """plan_change: what a promote, shadow, canary, stage or retire changes, and what it refuses."""

    def test_promote_stages_the_previous_active_version(self) -> None:
        """Promoting makes the version active and the old active staged (for rollback)."""
        changes = plan_change("m", {"1": ACTIVE, "2": SHADOW}, "2", ACTIVE)
        assert changes == [
            RolloutChange("m", "2", SHADOW, ACTIVE),
            RolloutChange("m", "1", ACTIVE, STAGED),
        ]
        assert apply_changes({"1": ACTIVE, "2": SHADOW}, changes) == {"1": STAGED, "2": ACTIVE}

    def test_promote_of_a_model_without_active_version(self) -> None:
        """A model with no active version gets one."""
        assert plan_change("m", {"1": STAGED}, "1", ACTIVE) == [
            RolloutChange("m", "1", STAGED, ACTIVE)
        ]

    def test_unchanged_mode_is_no_change(self) -> None:
        """Asking for the current mode changes (and audits) nothing."""
        assert plan_change("m", {"1": ACTIVE, "2": SHADOW}, "2", SHADOW) == []

    def test_canary_percentage_can_be_changed(self) -> None:
        """A canary's share is a change of its mode."""
        changes = plan_change("m", {"1": ACTIVE, "2": canary(5)}, "2", canary(25))
        assert changes == [RolloutChange("m", "2", canary(5), canary(25))]
        assert changes[0].model_id == "m@2"

    @pytest.mark.parametrize("target", [STAGED, SHADOW, RETIRED, canary(10)])
    def test_the_active_version_cannot_be_moved_aside(self, target: VersionRollout) -> None:
        """Retiring, staging or shadowing the active version would leave the name unserved."""
        with pytest.raises(ConflictError, match="promote another version first") as caught:
            plan_change("m", {"1": ACTIVE, "2": STAGED}, "1", target)
        assert caught.value.code is ErrorCode.MODEL_REGISTRY_CONFLICT

    def test_canary_needs_an_active_version(self) -> None:
        """There is no traffic to share without an active version."""
        with pytest.raises(ConflictError, match="no active version"):
            plan_change("m", {"1": STAGED}, "1", canary(10))

    def test_one_canary_at_a_time(self) -> None:
        """A second canary is refused until the first is staged or promoted."""
        with pytest.raises(ConflictError, match="already a canary"):
            plan_change("m", {"1": ACTIVE, "2": canary(5), "3": STAGED}, "3", canary(5))

    def test_unknown_version_is_refused(self) -> None:
        """A version that is not registered cannot change mode."""
        with pytest.raises(ConflictError, match="not registered"):
            plan_change("m", {"1": ACTIVE}, str(uuid.uuid4())[:8], SHADOW)

    def test_retired_version_can_come_back(self) -> None:
        """Retirement is reversible by an explicit change."""
        assert plan_change("m", {"1": ACTIVE, "2": RETIRED}, "2", SHADOW) == [
            RolloutChange("m", "2", RETIRED, SHADOW)
        ]

    def test_describe_is_an_audit_token(self) -> None:
        """describe() gives 'canary:N' or the mode value."""
        assert canary(7).describe() == "canary:7"
        assert RETIRED.describe() == "retired"
