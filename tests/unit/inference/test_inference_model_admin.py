"""Bring your own model: add, scaffold, promote / shadow / canary / retire, show — with audit."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from schemas.audit import ApiAction, ApiActionKind
from schemas.errors import ErrorCode, RadstreamError, TransientError
from schemas.rollout import RolloutMode
from streams.inference import model_admin
from streams.inference.model_admin import (
    LOCK_FILE,
    add_model,
    change_rollout,
    placeholders,
    promote,
    registry_lock,
    render_details,
    retire,
    scaffold_manifest,
    show_model,
    split_model_id,
)
from streams.inference.registry import ModelRegistry, ServingStatus, sha256_hex
from streams.inference.rollout import ROLLOUT_FILE, SHADOW, STAGED, VersionRollout
from tests.unit.inference.inference_builders import REGISTRY_DIR, FakeRunner
from tests.unit.inference.onnx_builders import mean_model

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class ShapedRunner:
    """A runner returning a fixed array, whatever it is given."""

    provider = "FakeExecutionProvider"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def run_batch(self, _inputs: np.ndarray) -> np.ndarray:
        return self.scores


ACTOR = "ops.alice"


class Recorder:
    """A fake api.actions publisher: keeps what it was given, or fails like a dead broker."""

    def __init__(self, *, fail: bool = False) -> None:
        self.actions: list[ApiAction] = []
        self.fail = fail

    async def __call__(self, actions: Sequence[ApiAction]) -> None:
        if self.fail:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker down")
        self.actions.extend(actions)


def manifest_text(version: str = "1.0.0", **overrides: Any) -> str:
    data: dict[str, Any] = {
        "name": "byo-model",
        "version": version,
        "runtime": "onnxruntime",
        "status": "research — not for clinical use",
        "intended_use": "tests only",
        "input": {"channels": 1, "height": 4, "width": 4, "normalisation": {"kind": "minmax"}},
        "output": {
            "labels": ["finding"],
            "score_meaning": "mean intensity",
            "thresholds": {"finding": 0.5},
        },
    }
    data.update(overrides)
    return yaml.safe_dump(data, allow_unicode=True)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """An ONNX file, a model card and an empty registry directory."""
    onnx_path = tmp_path / "exported.onnx"
    onnx_path.write_bytes(mean_model())
    card = tmp_path / "CARD.md"
    card.write_text("# byo-model\n\nResearch model for tests.\n", encoding="utf-8")
    registry = tmp_path / "registry"
    registry.mkdir()
    return {"onnx": onnx_path, "card": card, "registry": registry}


def add(files: dict[str, Path], text: str, publish: Recorder | None = None, **options: Any) -> Any:
    return asyncio.run(
        add_model(
            files["registry"],
            files["onnx"],
            files["card"],
            text,
            actor=ACTOR,
            publish=publish or Recorder(),
            clock=lambda: NOW,
            **options,
        )
    )


def change(
    registry: Path, model_id: str, target: VersionRollout, publish: Recorder, **options: Any
) -> Any:
    return asyncio.run(
        change_rollout(
            registry, model_id, target, actor=ACTOR, publish=publish, clock=lambda: NOW, **options
        )
    )


def _raises(code: ErrorCode, call: Any) -> RadstreamError:
    with pytest.raises(RadstreamError) as caught:
        call()
    assert caught.value.code is code, caught.value
    return caught.value


class TestAdd:
    def test_installs_a_verified_staged_version_and_audits_it(self, files: dict[str, Path]) -> None:
        """Files, computed digest, staged mode, one model_add action with the digest."""
        recorder = Recorder()
        added = add(files, manifest_text(), recorder)
        digest = sha256_hex(files["onnx"].read_bytes())
        assert added.manifest.weights.sha256 == digest
        assert sorted(p.name for p in added.directory.iterdir()) == [
            "MODEL_CARD.md",
            "manifest.yaml",
            "model.onnx",
        ]
        (action,) = recorder.actions
        assert (action.action, action.outcome, action.actor_id) == (
            ApiActionKind.MODEL_ADD,
            "success",
            ACTOR,
        )
        assert (action.model_name, action.model_version, action.weights_sha256) == (
            "byo-model",
            "1.0.0",
            digest,
        )
        registry = ModelRegistry.load(files["registry"])
        (row,) = registry.list()
        assert (row.status, row.rollout) == (ServingStatus.AVAILABLE, RolloutMode.STAGED)
        assert registry.resolve("byo-model@1.0.0").manifest.weights.sha256 == digest

    def test_a_manifest_lying_about_the_shape_is_refused(self, files: dict[str, Path]) -> None:
        """Declaring 8x8 for a 4x4 graph: MODEL_MANIFEST_MISMATCH, nothing installed."""
        text = manifest_text(
            input={"channels": 1, "height": 8, "width": 8, "normalisation": {"kind": "minmax"}}
        )
        recorder = Recorder()
        error = _raises(ErrorCode.MODEL_MANIFEST_MISMATCH, lambda: add(files, text, recorder))
        assert "(?, 1, 4, 4)" in error.reason
        assert list(files["registry"].iterdir()) == []
        assert recorder.actions == []

    @pytest.mark.parametrize(
        ("runner", "fragment"),
        [
            (FakeRunner(fail_when=lambda _inputs: True), "trial run on 2 blank NCHW images failed"),
            (ShapedRunner(np.zeros((2, 3))), "returned (2, 3) finite scores, expected (2, 1)"),
            (ShapedRunner(np.full((2, 1), np.nan)), "non-finite"),
        ],
    )
    def test_the_trial_run_catches_what_shapes_do_not(
        self, files: dict[str, Path], runner: object, fragment: str
    ) -> None:
        """A graph that cannot batch, or returns other or non-finite scores, is refused."""
        error = _raises(
            ErrorCode.MODEL_MANIFEST_MISMATCH,
            lambda: add(files, manifest_text(), session_factory=lambda _w, _m: runner),
        )
        assert fragment in error.reason

    def test_a_declared_digest_must_be_the_files(self, files: dict[str, Path]) -> None:
        """A manifest naming other weights (a swapped file) is refused."""
        text = manifest_text(weights={"file": "model.onnx", "sha256": "0" * 64})
        _raises(ErrorCode.MODEL_CHECKSUM_MISMATCH, lambda: add(files, text))

    def test_a_model_card_is_required(self, files: dict[str, Path]) -> None:
        """No card, or an empty one: REQUEST_INVALID."""
        files["card"].unlink()
        assert (
            "model card"
            in _raises(ErrorCode.REQUEST_INVALID, lambda: add(files, manifest_text())).reason
        )
        files["card"].write_text("  \n", encoding="utf-8")
        assert (
            "empty"
            in _raises(ErrorCode.REQUEST_INVALID, lambda: add(files, manifest_text())).reason
        )

    def test_an_unreviewed_scaffold_is_refused(self, files: dict[str, Path]) -> None:
        """TODO placeholders left in the manifest are named and refused."""
        text = scaffold_manifest(files["onnx"].read_bytes(), name="byo-model", version="1.0.0")
        error = _raises(ErrorCode.REQUEST_INVALID, lambda: add(files, text))
        assert "input.normalisation.kind" in error.reason
        assert "intended_use" in error.reason

    def test_an_existing_version_is_never_replaced(self, files: dict[str, Path]) -> None:
        """Versions are immutable: a second add of 1.0.0 is a conflict, audited as refused."""
        add(files, manifest_text())
        recorder = Recorder()
        _raises(ErrorCode.MODEL_REGISTRY_CONFLICT, lambda: add(files, manifest_text(), recorder))
        assert [(a.outcome, a.error_code) for a in recorder.actions] == [
            ("failure", ErrorCode.MODEL_REGISTRY_CONFLICT)
        ]

    def test_no_audit_no_install(self, files: dict[str, Path]) -> None:
        """When the audit action cannot be published, nothing is installed."""
        with pytest.raises(TransientError):
            add(files, manifest_text(), Recorder(fail=True))
        assert sorted(p.name for p in files["registry"].iterdir()) == [LOCK_FILE]

    def test_a_legacy_model_gets_explicit_modes(self, tmp_path: Path) -> None:
        """Adding to a registry without rollout.yaml writes the legacy defaults down."""
        registry = tmp_path / "registry"
        shutil.copytree(REGISTRY_DIR, registry, ignore=shutil.ignore_patterns(ROLLOUT_FILE))
        source = registry / "lesion-detector" / "1.1.0"
        text = (source / "manifest.yaml").read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        data.update(version="2.0.0", default=False)
        files = {
            "onnx": source / "model.onnx",
            "card": source / "MODEL_CARD.md",
            "registry": registry,
        }
        add(files, yaml.safe_dump(data, allow_unicode=True))
        modes = ModelRegistry.load(registry).modes("lesion-detector")
        assert {v: r.mode for v, r in modes.items()} == {
            "1.0.0": RolloutMode.STAGED,
            "1.1.0": RolloutMode.ACTIVE,
            "1.2.0": RolloutMode.STAGED,
            "2.0.0": RolloutMode.STAGED,
        }


class TestScaffold:
    def test_fills_in_what_the_graph_says(self, files: dict[str, Path]) -> None:
        """Tensor names, layout, size, digest and label count come from the graph."""
        weights = mean_model(["N", 3, 8, 6], ["N", 2], labels=2)
        data = yaml.safe_load(scaffold_manifest(weights, name="m", version="1"))
        assert data["weights"]["sha256"] == sha256_hex(weights)
        assert {
            k: data["input"][k] for k in ("tensor", "channels", "height", "width", "layout")
        } == {
            "tensor": "image",
            "channels": 3,
            "height": 8,
            "width": 6,
            "layout": "NCHW",
        }
        assert len(data["output"]["labels"]) == 2
        assert "output.labels.0" in placeholders(data)

    def test_nhwc_and_dynamic_sizes(self) -> None:
        """Channels last are recognised; dynamic sizes are left to the reviewer."""
        data = yaml.safe_load(
            scaffold_manifest(mean_model(["N", "H", "W", 3]), name="m", version="1")
        )
        assert (data["input"]["layout"], data["input"]["channels"]) == ("NHWC", 3)
        assert "input.height" in placeholders(data)

    def test_given_facts_make_an_installable_manifest(self, files: dict[str, Path]) -> None:
        """With labels, normalisation and texts given, the scaffold installs as it is."""
        text = scaffold_manifest(
            files["onnx"].read_bytes(),
            name="byo-model",
            version="1.0.0",
            labels=["finding"],
            normalisation={"kind": "minmax"},
            intended_use="tests only",
            score_meaning="mean intensity",
        ).replace("TODO: e.g. research use only — not for clinical use", "research")
        assert placeholders(yaml.safe_load(text)) == []
        assert add(files, text).manifest.output.labels == ("finding",)

    def test_wrong_label_count_is_refused(self, files: dict[str, Path]) -> None:
        """Two labels for a one-score graph cannot be scaffolded."""
        _raises(
            ErrorCode.MODEL_MANIFEST_MISMATCH,
            lambda: scaffold_manifest(
                files["onnx"].read_bytes(), name="m", version="1", labels=["a", "b"]
            ),
        )


def _two_versions(files: dict[str, Path]) -> Path:
    add(files, manifest_text("1.0.0"))
    add(files, manifest_text("2.0.0"))
    asyncio.run(promote(files["registry"], "byo-model@1.0.0", actor=ACTOR, publish=Recorder()))
    return files["registry"]


class TestRollout:
    def test_promote_audits_both_versions_and_rewrites_the_file(
        self, files: dict[str, Path]
    ) -> None:
        """2.0.0 staged -> active and 1.0.0 active -> staged, one action each, one correlation."""
        registry = _two_versions(files)
        recorder = Recorder()
        changes = asyncio.run(
            promote(registry, "byo-model@2.0.0", actor=ACTOR, publish=recorder, clock=lambda: NOW)
        )
        assert [(c.version, c.current.mode) for c in changes] == [
            ("2.0.0", RolloutMode.ACTIVE),
            ("1.0.0", RolloutMode.STAGED),
        ]
        assert [
            (a.model_version, a.previous_rollout_mode, a.rollout_mode, a.route)
            for a in recorder.actions
        ] == [
            ("2.0.0", RolloutMode.STAGED, RolloutMode.ACTIVE, "cli/models/promote"),
            ("1.0.0", RolloutMode.ACTIVE, RolloutMode.STAGED, "cli/models/promote"),
        ]
        assert len({a.correlation_id for a in recorder.actions}) == 1
        assert ModelRegistry.load(registry).resolve("byo-model").manifest.version == "2.0.0"

    def test_canary_and_shadow(self, files: dict[str, Path]) -> None:
        """A canary with its share, then a shadow, land in rollout.yaml."""
        registry = _two_versions(files)
        recorder = Recorder()
        canary = VersionRollout(mode=RolloutMode.CANARY, canary_percent=10)
        change(registry, "byo-model@2.0.0", canary, recorder)
        assert recorder.actions[0].canary_percent == 10
        assert ModelRegistry.load(registry).mode("byo-model", "2.0.0") == canary
        change(registry, "byo-model@2.0.0", SHADOW, recorder)
        assert ModelRegistry.load(registry).mode("byo-model", "2.0.0") == SHADOW

    def test_retire_then_pinned_requests_are_refused(self, files: dict[str, Path]) -> None:
        """A retired version is refused when pinned."""
        registry = _two_versions(files)
        asyncio.run(retire(registry, "byo-model@2.0.0", actor=ACTOR, publish=Recorder()))
        _raises(
            ErrorCode.MODEL_VERSION_RETIRED,
            lambda: ModelRegistry.load(registry).resolve("byo-model@2.0.0"),
        )

    def test_refusals_are_audited_and_change_nothing(self, files: dict[str, Path]) -> None:
        """Retiring the active version is refused, audited as a failure, the file unchanged."""
        registry = _two_versions(files)
        before = (registry / ROLLOUT_FILE).read_text(encoding="utf-8")
        recorder = Recorder()
        _raises(
            ErrorCode.MODEL_REGISTRY_CONFLICT,
            lambda: asyncio.run(retire(registry, "byo-model@1.0.0", actor=ACTOR, publish=recorder)),
        )
        assert [(a.outcome, a.http_status, a.error_code) for a in recorder.actions] == [
            ("failure", 409, ErrorCode.MODEL_REGISTRY_CONFLICT)
        ]
        assert (registry / ROLLOUT_FILE).read_text(encoding="utf-8") == before

    def test_a_version_with_swapped_weights_cannot_go_into_traffic(
        self, files: dict[str, Path]
    ) -> None:
        """Weights changed after install: promote and shadow are refused naming the checksum."""
        registry = _two_versions(files)
        (registry / "byo-model" / "2.0.0" / "model.onnx").write_bytes(
            mean_model(["N", 1, 4, 4]) + b"x"
        )
        error = _raises(
            ErrorCode.MODEL_REGISTRY_CONFLICT,
            lambda: change(registry, "byo-model@2.0.0", SHADOW, Recorder()),
        )
        assert "MODEL_CHECKSUM_MISMATCH" in error.reason
        # Taking a broken version out of traffic is always allowed.
        assert change(registry, "byo-model@2.0.0", STAGED, Recorder()) == []

    def test_unchanged_mode_publishes_nothing(self, files: dict[str, Path]) -> None:
        """Asking for the current mode is not a change and is not audited."""
        registry = _two_versions(files)
        recorder = Recorder()
        assert change(registry, "byo-model@2.0.0", STAGED, recorder) == []
        assert recorder.actions == []

    def test_unknown_version_is_not_found_and_audited(self, files: dict[str, Path]) -> None:
        """A version that is not installed: MODEL_NOT_FOUND, recorded as a failed attempt."""
        registry = _two_versions(files)
        recorder = Recorder()
        _raises(
            ErrorCode.MODEL_NOT_FOUND, lambda: change(registry, "byo-model@9.9.9", SHADOW, recorder)
        )
        assert [a.error_code for a in recorder.actions] == [ErrorCode.MODEL_NOT_FOUND]

    def test_no_audit_no_change(self, files: dict[str, Path]) -> None:
        """When the actions cannot be published, rollout.yaml stays as it was."""
        registry = _two_versions(files)
        before = (registry / ROLLOUT_FILE).read_text(encoding="utf-8")
        with pytest.raises(TransientError):
            change(registry, "byo-model@2.0.0", SHADOW, Recorder(fail=True))
        assert (registry / ROLLOUT_FILE).read_text(encoding="utf-8") == before

    def test_a_failed_write_is_audited_as_failed(
        self, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the file cannot be replaced after the audit, a failure action follows."""
        registry = _two_versions(files)

        def disk_full(_path: Path, _text: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(model_admin, "write_text_atomic", disk_full)
        recorder = Recorder()
        _raises(
            ErrorCode.INTERNAL_ERROR, lambda: change(registry, "byo-model@2.0.0", SHADOW, recorder)
        )
        assert [a.outcome for a in recorder.actions] == ["success", "failure"]

    def test_one_change_at_a_time(self, files: dict[str, Path]) -> None:
        """While another operation holds the lock, a change waits (bounded) then times out."""
        registry = _two_versions(files)

        async def contended() -> None:
            async with registry_lock(registry):
                await change_rollout(
                    registry,
                    "byo-model@2.0.0",
                    SHADOW,
                    actor=ACTOR,
                    publish=Recorder(),
                    lock_timeout=0.2,
                )

        _raises(ErrorCode.TIMEOUT, lambda: asyncio.run(contended()))

    @pytest.mark.parametrize(
        ("model_id", "actor"), [("byo-model", ACTOR), ("byo-model@2.0.0", "Jane Doe")]
    )
    def test_bad_ids_and_actors_are_refused(
        self, files: dict[str, Path], model_id: str, actor: str
    ) -> None:
        """A bare name (which version?) or a free-text actor is REQUEST_INVALID."""
        registry = _two_versions(files)
        _raises(
            ErrorCode.REQUEST_INVALID,
            lambda: asyncio.run(
                change_rollout(registry, model_id, SHADOW, actor=actor, publish=Recorder())
            ),
        )

    def test_a_missing_registry_is_a_clear_error(self, tmp_path: Path) -> None:
        """A registry directory that does not exist: MODEL_LOAD_FAILED naming it."""
        error = _raises(
            ErrorCode.MODEL_LOAD_FAILED,
            lambda: change(tmp_path / "absent", "m@1", SHADOW, Recorder()),
        )
        assert "cannot be locked" in error.reason

    def test_split_model_id(self) -> None:
        """name@version splits; anything else is refused."""
        assert split_model_id("m@1.0+cu") == ("m", "1.0+cu")
        _raises(ErrorCode.REQUEST_INVALID, lambda: split_model_id("m@"))


class TestShow:
    def test_bare_name_shows_the_active_version(self, files: dict[str, Path]) -> None:
        """Details of the active version: verified status, mode, card heading, all versions."""
        registry = _two_versions(files)
        details = show_model(registry, "byo-model")
        assert (details.status.version, details.status.status) == ("1.0.0", ServingStatus.AVAILABLE)
        lines = render_details(details)
        assert lines[0] == "byo-model@1.0.0  available"
        assert any("rollout      active" in line for line in lines)
        assert any("versions     1.0.0 active, 2.0.0 staged" in line for line in lines)
        assert lines[-1] == "  model card   MODEL_CARD.md: # byo-model"

    def test_a_broken_version_is_shown_with_its_error(self, files: dict[str, Path]) -> None:
        """Swapped weights show as refused with the code."""
        registry = _two_versions(files)
        (registry / "byo-model" / "2.0.0" / "model.onnx").write_bytes(b"swapped")
        details = show_model(registry, "byo-model@2.0.0")
        assert details.status.status is ServingStatus.REFUSED
        assert "MODEL_CHECKSUM_MISMATCH" in render_details(details)[0]

    def test_the_reference_model_shows_its_guard(self) -> None:
        """The shipped model lists its input guard ranges."""
        lines = render_details(show_model(REGISTRY_DIR, "lesion-detector"))
        guard = next(line for line in lines if "input guard" in line)
        assert "fraction_high in [" in guard

    def test_unknown_model_is_not_found(self, files: dict[str, Path]) -> None:
        """No such model: MODEL_NOT_FOUND."""
        _raises(ErrorCode.MODEL_NOT_FOUND, lambda: show_model(files["registry"], "ghost"))
