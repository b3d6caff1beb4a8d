"""The registry and micro-batching under rollout modes: active, canary, shadow, staged, retired."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from schemas.errors import ErrorCode, InferenceError, ResourceNotFoundError
from schemas.rollout import RolloutMode
from streams.inference.batching import infer_batch, rollout_key
from streams.inference.manifest import ModelManifest
from streams.inference.registry import ModelRegistry, ServingStatus
from streams.inference.rollout import in_canary
from streams.inference.routing import RoutingRules
from streams.inference.runtime import BatchRunner
from tests.unit.inference.inference_builders import (
    NO_RULES,
    FakeRunner,
    fake_registry,
    make_event,
    make_manifest,
    make_request,
    manifest_data,
    rollout_state,
)

pytestmark = pytest.mark.requirement("RS-MOD-02")

ROLLOUT = """
models:
  fake-model:
    '1.0.0': {mode: active}
    '2.0.0': {mode: shadow}
    '3.0.0': {mode: retired}
    '4.0.0': {mode: canary, canary_percent: 50}
"""


CT_RULES = RoutingRules.parse("rules:\n  - modality: CT\n    models: [fake-model]\n")


def _registry(
    text: str = ROLLOUT,
    versions: tuple[str, ...] = ("1.0.0", "2.0.0", "3.0.0", "4.0.0"),
    **runners_by_version: FakeRunner,
) -> tuple[ModelRegistry, dict[str, FakeRunner]]:
    runners = {version: FakeRunner() for version in versions}
    runners.update({k[1:].replace("_", "."): v for k, v in runners_by_version.items()})
    registry = fake_registry(
        *((make_manifest(version=v, default=False), runners[v]) for v in versions),
        rollout=rollout_state(text),
    )
    return registry, runners


def _study(inside: bool) -> str:
    return next(
        f"1.2.3.{i}" for i in range(1000) if in_canary("fake-model", f"1.2.3.{i}", 50) is inside
    )


class TestRegistryModes:
    """What resolve, select and list do with modes."""

    def test_bare_name_resolves_to_the_active_version(self) -> None:
        """resolve() of the bare name is the active version, whatever the manifests say."""
        registry, _ = _registry()
        assert registry.resolve("fake-model").manifest.version == "1.0.0"

    def test_pinned_retired_version_is_refused(self) -> None:
        """A router pinning a retired version gets MODEL_VERSION_RETIRED."""
        registry, _ = _registry()
        with pytest.raises(ResourceNotFoundError) as caught:
            registry.resolve("fake-model@3.0.0")
        assert caught.value.code is ErrorCode.MODEL_VERSION_RETIRED

    def test_pinned_shadow_version_runs_published(self) -> None:
        """Pinning name@version runs that version alone, as a published result."""
        registry, _ = _registry()
        selected = registry.select("fake-model@2.0.0", "1.2.3")
        assert [(m.manifest.version, shadow) for m, shadow in selected] == [("2.0.0", False)]

    @pytest.mark.parametrize(
        ("inside", "expected"),
        [
            pytest.param(
                False,
                [("1.0.0", False), ("2.0.0", True)],
                id="outside the canary: active published, shadows beside it",
            ),
            pytest.param(
                True,
                [("4.0.0", False), ("1.0.0", True), ("2.0.0", True)],
                id="inside the canary: the canary published, the active version in shadow",
            ),
        ],
    )
    def test_bare_name_by_canary_share(
        self, inside: bool, expected: list[tuple[str, bool]]
    ) -> None:
        """A bare model name runs the published version and its shadows by the canary share."""
        registry, _ = _registry()
        selected = registry.select("fake-model", _study(inside=inside))
        assert [(m.manifest.version, s) for m, s in selected] == expected

    def test_a_shadow_that_cannot_be_served_is_left_out(self) -> None:
        """A broken shadow never affects published traffic."""
        registry = fake_registry(
            (make_manifest(version="1.0.0"), FakeRunner()),
            (make_manifest(version="2.0.0", default=False), None),
            rollout=rollout_state(
                "models:\n  fake-model:\n    '1.0.0': {mode: active}\n    '2.0.0': {mode: shadow}\n"
            ),
        )
        assert [(m.manifest.version, s) for m, s in registry.select("fake-model", "k")] == [
            ("1.0.0", False)
        ]

    def test_bare_name_without_active_version_fails(self) -> None:
        """No active version: the bare name is refused with a reason, pins still work."""
        registry, _ = _registry("models:\n  fake-model:\n    '1.0.0': {mode: staged}\n", ("1.0.0",))
        with pytest.raises(InferenceError, match="0 active versions"):
            registry.select("fake-model", "k")
        assert registry.select("fake-model@1.0.0", "k")[0][0].manifest.version == "1.0.0"

    def test_unknown_model_is_not_found(self) -> None:
        """select() of an unregistered name is MODEL_NOT_FOUND."""
        registry, _ = _registry()
        with pytest.raises(ResourceNotFoundError) as caught:
            registry.select("ghost", "k")
        assert caught.value.code is ErrorCode.MODEL_NOT_FOUND

    def test_list_shows_modes(self) -> None:
        """Each row says its mode, a canary its share; only the active version is default."""
        registry, _ = _registry()
        rows = {row.version: row for row in registry.list()}
        assert {v: r.rollout for v, r in rows.items()} == {
            "1.0.0": RolloutMode.ACTIVE,
            "2.0.0": RolloutMode.SHADOW,
            "3.0.0": RolloutMode.RETIRED,
            "4.0.0": RolloutMode.CANARY,
        }
        assert rows["4.0.0"].canary_percent == 50
        assert [v for v, r in rows.items() if r.default] == ["1.0.0"]
        assert registry.mode("fake-model", "9.9.9").mode is RolloutMode.STAGED
        assert set(registry.modes("fake-model")) == set(rows)


def _fake_factory(_weights: bytes, _manifest: ModelManifest) -> BatchRunner:
    return FakeRunner()


def _write_version(root: Path, version: str) -> None:
    directory = root / "fake-model" / version
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"w")
    data = manifest_data(
        version=version,
        default=True,
        weights={"file": "model.onnx", "sha256": hashlib.sha256(b"w").hexdigest()},
    )
    (directory / "manifest.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))


class TestRegistryFiles:
    """Loading rollout.yaml from the registry directory."""

    def test_rollout_file_decides_over_manifest_defaults(self, tmp_path: Path) -> None:
        """Both manifests say default; rollout.yaml picks the active one."""
        _write_version(tmp_path, "1.0.0")
        _write_version(tmp_path, "2.0.0")
        (tmp_path / "rollout.yaml").write_text(
            "models:\n  fake-model:\n    '2.0.0': {mode: active}\n"
        )
        registry = ModelRegistry.load(tmp_path, session_factory=_fake_factory)
        assert registry.resolve("fake-model").manifest.version == "2.0.0"
        assert registry.mode("fake-model", "1.0.0").mode is RolloutMode.STAGED

    def test_invalid_rollout_file_stops_the_load(self, tmp_path: Path) -> None:
        """A typo must stop the worker rather than serve the wrong version."""
        _write_version(tmp_path, "1.0.0")
        (tmp_path / "rollout.yaml").write_text("models:\n  fake-model:\n    '1.0.0': live\n")
        with pytest.raises(InferenceError, match=r"invalid rollout\.yaml") as caught:
            ModelRegistry.load(tmp_path, session_factory=_fake_factory)
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED

    def test_unreadable_rollout_file_stops_the_load(self, tmp_path: Path) -> None:
        """A rollout.yaml that cannot be read (here a directory) is MODEL_LOAD_FAILED."""
        _write_version(tmp_path, "1.0.0")
        (tmp_path / "rollout.yaml").mkdir()
        with pytest.raises(InferenceError, match="unreadable"):
            ModelRegistry.load(tmp_path, session_factory=_fake_factory)

    def test_hidden_folders_are_not_models(self, tmp_path: Path) -> None:
        """An install in progress (a hidden folder) is not scanned."""
        _write_version(tmp_path, "1.0.0")
        _write_version(tmp_path / ".install-x", "2.0.0")
        registry = ModelRegistry.load(tmp_path, session_factory=_fake_factory)
        assert [(r.name, r.version, r.status) for r in registry.list()] == [
            ("fake-model", "1.0.0", ServingStatus.AVAILABLE)
        ]


class TestBatchingUnderRollout:
    """infer_batch: published and shadow outcomes."""

    def test_shadows_do_not_run_unless_asked(self) -> None:
        """By default only published versions run (the stage publishes every outcome)."""
        registry, runners = _registry()
        request = make_request(study_instance_uid=_study(inside=False))
        outcomes = infer_batch([request], registry, CT_RULES)
        assert [(o.model_id, o.shadow) for o in outcomes] == [("fake-model@1.0.0", False)]
        assert runners["2.0.0"].batch_sizes == []

    def test_shadow_outcomes_follow_the_published_one(self) -> None:
        """With include_shadows, shadows run on the same image, flagged, after the published."""
        registry, runners = _registry()
        requests = [make_request(study_instance_uid=_study(inside=False)) for _ in range(3)]
        outcomes = infer_batch(requests, registry, CT_RULES, include_shadows=True)
        assert [(o.model_id, o.shadow) for o in outcomes] == [
            ("fake-model@1.0.0", False),
            ("fake-model@2.0.0", True),
        ] * 3
        assert all(o.ok for o in outcomes)
        assert (runners["1.0.0"].batch_sizes, runners["2.0.0"].batch_sizes) == ([3], [3])

    def test_canary_study_is_published_by_the_canary(self) -> None:
        """A study in the canary share gets the canary's result; the active runs in shadow."""
        registry, _ = _registry()
        request = make_request(study_instance_uid=_study(inside=True))
        outcomes = infer_batch([request], registry, CT_RULES, include_shadows=True)
        assert [(o.model_id, o.shadow) for o in outcomes] == [
            ("fake-model@4.0.0", False),
            ("fake-model@1.0.0", True),
            ("fake-model@2.0.0", True),
        ]
        published = outcomes[0].result
        assert published is not None
        assert published.model.version == "4.0.0"

    def test_a_pinned_shadow_version_is_published_once(self) -> None:
        """An event pinning the shadow version and naming the model gets it once, published."""
        registry, runners = _registry()
        request = make_request(
            study_instance_uid=_study(inside=False), model_ids=("fake-model", "fake-model@2.0.0")
        )
        outcomes = infer_batch([request], registry, NO_RULES, include_shadows=True)
        assert [(o.model_id, o.shadow) for o in outcomes] == [
            ("fake-model@1.0.0", False),
            ("fake-model@2.0.0", False),
        ]
        assert runners["2.0.0"].batch_sizes == [1]

    def test_shadow_failures_stay_shadow(self) -> None:
        """A shadow that fails on an image yields a failed outcome flagged shadow."""
        registry, _ = _registry(
            "models:\n  fake-model:\n    '1.0.0': {mode: active}\n    '2.0.0': {mode: shadow}\n",
            ("1.0.0", "2.0.0"),
            v2_0_0=FakeRunner(fail_when=lambda _inputs: True),
        )
        outcomes = infer_batch([make_request()], registry, CT_RULES, include_shadows=True)
        assert [(o.model_id, o.ok, o.shadow) for o in outcomes] == [
            ("fake-model@1.0.0", True, False),
            ("fake-model@2.0.0", False, True),
        ]
        assert outcomes[1].error is not None
        assert outcomes[1].error.code is ErrorCode.INFERENCE_FAILED

    def test_retired_pin_is_a_rejection(self) -> None:
        """An event pinning a retired version fails alone with MODEL_VERSION_RETIRED."""
        registry, _ = _registry()
        outcomes = infer_batch(
            [
                make_request(model_ids=("fake-model@3.0.0",)),
                make_request(model_ids=("fake-model",)),
            ],
            registry,
            NO_RULES,
        )
        assert outcomes[0].error is not None
        assert outcomes[0].error.code is ErrorCode.MODEL_VERSION_RETIRED
        assert outcomes[1].ok

    def test_rollout_key_is_the_study_else_the_event(self) -> None:
        """Canary shares follow the study; an image without one is keyed by its event id."""
        with_study = make_event(study_instance_uid="1.2.3")
        without = make_event(study_instance_uid=None)
        assert rollout_key(with_study) == "1.2.3"
        assert rollout_key(without) == str(without.event_id)
