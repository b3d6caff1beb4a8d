"""The model registry: versions, defaults, checksum refusal and isolation of broken models."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from schemas.errors import ErrorCode, InferenceError, ResourceNotFoundError
from streams.inference.manifest import ModelManifest
from streams.inference.registry import (
    ModelRegistry,
    ModelStatus,
    RegisteredModel,
    ServingStatus,
    load_model_version,
)
from streams.inference.runtime import BatchRunner
from tests.unit.inference.inference_builders import (
    REGISTRY_DIR,
    FakeRunner,
    fake_registry,
    make_manifest,
    manifest_data,
)

pytestmark = pytest.mark.requirement("RS-INF-01", "RS-INF-02")

MODEL = "lesion-detector"


@pytest.fixture
def registry_copy(tmp_path: Path) -> Path:
    """A private copy of the committed registry that a test may tamper with."""
    target = tmp_path / "model_registry"
    shutil.copytree(REGISTRY_DIR, target)
    return target


def _row(registry: ModelRegistry, version: str, name: str = MODEL) -> ModelStatus:
    return next(row for row in registry.list() if (row.name, row.version) == (name, version))


def _status(registry: ModelRegistry, version: str) -> ServingStatus:
    return _row(registry, version).status


def _write_model(root: Path, version: str, *, default: bool, weights: bytes = b"w") -> Path:
    directory = root / "fake-model" / version
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(weights)
    data = manifest_data(
        version=version,
        default=default,
        weights={"file": "model.onnx", "sha256": hashlib.sha256(weights).hexdigest()},
    )
    (directory / "manifest.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return directory


def _fake_factory(_weights: bytes, _manifest: ModelManifest) -> BatchRunner:
    return FakeRunner()


class TestCommittedRegistry:
    """The registry shipped in the repository."""

    def test_lists_every_version_available(self, reference_registry: ModelRegistry) -> None:
        """Every reference version loads and verifies."""
        rows = [(r.name, r.version, r.status) for r in reference_registry.list()]
        assert rows == [
            ("image-quality", "1.0.0", ServingStatus.AVAILABLE),
            (MODEL, "1.0.0", ServingStatus.AVAILABLE),
            (MODEL, "1.1.0", ServingStatus.AVAILABLE),
            (MODEL, "1.2.0", ServingStatus.AVAILABLE),
        ]

    def test_exactly_one_default(self, reference_registry: ModelRegistry) -> None:
        """One version per model is the default: the active one of rollout.yaml."""
        assert [(r.name, r.version) for r in reference_registry.list() if r.default] == [
            ("image-quality", "1.0.0"),
            (MODEL, "1.2.0"),
        ]

    def test_list_shows_runtime_digest_and_clinical_status(
        self, reference_registry: ModelRegistry
    ) -> None:
        """Each row carries what `radstream models list` prints."""
        row = _row(reference_registry, "1.0.0")
        weights = (REGISTRY_DIR / MODEL / row.version / "model.onnx").read_bytes()
        assert row.runtime == "onnxruntime"
        assert row.weights_sha256 == hashlib.sha256(weights).hexdigest()
        assert row.clinical_status == "reference — not for clinical use"
        assert row.input is not None
        assert row.input.modalities == ("CT",)

    def test_bare_name_resolves_to_default(self, reference_registry: ModelRegistry) -> None:
        """`name` means the default (active) version."""
        assert reference_registry.resolve(MODEL).manifest.version == "1.2.0"

    def test_pinned_version_resolves(self, reference_registry: ModelRegistry) -> None:
        """`name@version` picks that version."""
        assert reference_registry.resolve(f"{MODEL}@1.0.0").manifest.version == "1.0.0"

    @pytest.mark.parametrize("model_id", ["no-such-model", f"{MODEL}@9.9.9"])
    def test_unknown_model_is_not_found(
        self, reference_registry: ModelRegistry, model_id: str
    ) -> None:
        """Unregistered names and versions raise MODEL_NOT_FOUND."""
        with pytest.raises(ResourceNotFoundError) as caught:
            reference_registry.resolve(model_id)
        assert caught.value.code is ErrorCode.MODEL_NOT_FOUND

    @pytest.mark.parametrize(
        ("model_id", "known"),
        [(MODEL, True), (f"{MODEL}@1.0.0", True), (f"{MODEL}@2.0.0", False), ("x", False)],
    )
    def test_knows(self, reference_registry: ModelRegistry, model_id: str, known: bool) -> None:
        """knows() answers for names and pinned versions."""
        assert reference_registry.knows(model_id) is known


class TestChecksumRefusal:
    """Tampered weights are refused without affecting other models."""

    def test_tampered_weights_are_refused(self, registry_copy: Path) -> None:
        """A changed weights file marks that version REFUSED with the mismatch code."""
        weights = registry_copy / MODEL / "1.0.0" / "model.onnx"
        weights.write_bytes(weights.read_bytes() + b"\0")
        registry = ModelRegistry.load(registry_copy)
        row = _row(registry, "1.0.0")
        assert row.status is ServingStatus.REFUSED
        assert row.error_code is ErrorCode.MODEL_CHECKSUM_MISMATCH

    def test_resolving_a_refused_model_raises_mismatch(self, registry_copy: Path) -> None:
        """resolve() raises MODEL_CHECKSUM_MISMATCH for the refused version."""
        weights = registry_copy / MODEL / "1.0.0" / "model.onnx"
        weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
        registry = ModelRegistry.load(registry_copy)
        with pytest.raises(InferenceError) as caught:
            registry.resolve(f"{MODEL}@1.0.0")
        assert caught.value.code is ErrorCode.MODEL_CHECKSUM_MISMATCH

    def test_other_versions_are_still_served(self, registry_copy: Path) -> None:
        """Refusing one version leaves the others available."""
        weights = registry_copy / MODEL / "1.0.0" / "model.onnx"
        weights.write_bytes(b"not the model")
        registry = ModelRegistry.load(registry_copy)
        assert registry.resolve(MODEL).manifest.version == "1.2.0"
        assert _status(registry, "1.2.0") is ServingStatus.AVAILABLE

    def test_refused_default_is_not_replaced_silently(self, registry_copy: Path) -> None:
        """If the default is refused, the bare name fails rather than serving another version."""
        weights = registry_copy / MODEL / "1.2.0" / "model.onnx"
        weights.write_bytes(b"tampered")
        registry = ModelRegistry.load(registry_copy)
        with pytest.raises(InferenceError) as caught:
            registry.resolve(MODEL)
        assert caught.value.code is ErrorCode.MODEL_CHECKSUM_MISMATCH
        assert registry.resolve(f"{MODEL}@1.0.0").runner is not None

    def test_missing_weights_fail_to_load(self, registry_copy: Path) -> None:
        """A manifest whose weights file is gone is LOAD_FAILED, not a crash."""
        (registry_copy / MODEL / "1.0.0" / "model.onnx").unlink()
        registry = ModelRegistry.load(registry_copy)
        assert _status(registry, "1.0.0") is ServingStatus.LOAD_FAILED
        with pytest.raises(InferenceError) as caught:
            registry.resolve(f"{MODEL}@1.0.0")
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED

    def test_weights_larger_than_the_limit_fail_to_load(
        self, registry_copy: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A weights file above the size limit is not read."""
        monkeypatch.setattr("streams.inference.registry.MAX_WEIGHTS_BYTES", 10)
        registry = ModelRegistry.load(registry_copy)
        row = _row(registry, "1.0.0")
        assert row.status is ServingStatus.LOAD_FAILED
        assert row.reason == "weights file is too large"


class TestBrokenRegistries:
    """Bad manifests and defaults are isolated per model."""

    def test_missing_directory_raises(self, tmp_path: Path) -> None:
        """A registry path that does not exist is a start-up error."""
        with pytest.raises(InferenceError) as caught:
            ModelRegistry.load(tmp_path / "absent")
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED

    def test_invalid_manifest_is_listed_as_load_failed(self, registry_copy: Path) -> None:
        """A manifest that does not parse is listed with its reason; others still load."""
        (registry_copy / MODEL / "1.0.0" / "manifest.yaml").write_text("name: [")
        registry = ModelRegistry.load(registry_copy)
        row = _row(registry, "1.0.0")
        assert (row.status, row.runtime, row.error_code) == (
            ServingStatus.LOAD_FAILED,
            None,
            ErrorCode.MODEL_LOAD_FAILED,
        )
        assert registry.resolve(MODEL).manifest.version == "1.2.0"

    def test_invalid_manifest_version_raises_on_resolve(self, registry_copy: Path) -> None:
        """Pinning a version whose manifest is broken raises its load error."""
        (registry_copy / MODEL / "1.0.0" / "manifest.yaml").write_text("name: [")
        registry = ModelRegistry.load(registry_copy)
        assert registry.knows(f"{MODEL}@1.0.0")
        with pytest.raises(InferenceError, match="not valid YAML"):
            registry.resolve(f"{MODEL}@1.0.0")

    def test_unreadable_manifest_is_load_failed(self, registry_copy: Path) -> None:
        """A manifest path that cannot be read (here a directory) does not crash loading."""
        manifest = registry_copy / MODEL / "1.0.0" / "manifest.yaml"
        manifest.unlink()
        manifest.mkdir()
        registry = ModelRegistry.load(registry_copy)
        assert _status(registry, "1.0.0") is ServingStatus.LOAD_FAILED

    def test_manifest_in_the_wrong_directory_is_refused(self, registry_copy: Path) -> None:
        """A manifest must live in <name>/<version>/ so paths and ids cannot disagree."""
        shutil.copytree(registry_copy / MODEL / "1.0.0", registry_copy / MODEL / "7.0.0")
        registry = ModelRegistry.load(registry_copy)
        with pytest.raises(InferenceError, match="lives in"):
            registry.resolve(f"{MODEL}@7.0.0")

    def test_two_defaults_make_the_bare_name_fail(self, tmp_path: Path) -> None:
        """Two default versions: the bare name is refused, pinned versions still work."""
        _write_model(tmp_path, "1.0.0", default=True)
        _write_model(tmp_path, "2.0.0", default=True)
        registry = ModelRegistry.load(tmp_path, session_factory=_fake_factory)
        with pytest.raises(InferenceError, match="2 active versions"):
            registry.resolve("fake-model")
        assert registry.resolve("fake-model@2.0.0").manifest.version == "2.0.0"

    def test_no_default_makes_the_bare_name_fail(self, tmp_path: Path) -> None:
        """Without a default the bare name cannot be resolved."""
        _write_model(tmp_path, "1.0.0", default=False)
        registry = ModelRegistry.load(tmp_path, session_factory=_fake_factory)
        assert registry.knows("fake-model")
        with pytest.raises(InferenceError, match="0 active versions"):
            registry.resolve("fake-model")

    def test_runtime_load_failure_is_recorded(self, tmp_path: Path) -> None:
        """Weights that verify but are not a loadable ONNX model are LOAD_FAILED."""
        _write_model(tmp_path, "1.0.0", default=True, weights=b"verified but not onnx")
        registry = ModelRegistry.load(tmp_path)
        row = registry.list()[0]
        assert (row.status, row.error_code) == (
            ServingStatus.LOAD_FAILED,
            ErrorCode.MODEL_LOAD_FAILED,
        )

    def test_unavailable_provider_fails_each_model_with_reason(self) -> None:
        """A provider missing from this build refuses to load, naming the provider."""
        registry = ModelRegistry.load(REGISTRY_DIR, providers=("NoSuchExecutionProvider",))
        reasons = {row.reason for row in registry.list()}
        assert all("NoSuchExecutionProvider" in (reason or "") for reason in reasons)

    def test_duplicate_registration_is_a_programming_error(self) -> None:
        """The same name@version cannot be registered twice."""
        manifest = make_manifest()
        with pytest.raises(ValueError, match="twice"):
            fake_registry((manifest, FakeRunner()), (manifest, FakeRunner()))

    def test_load_model_version_returns_parse_error(self, tmp_path: Path) -> None:
        """load_model_version returns (not raises) the error of an unparsable manifest."""
        directory = tmp_path / "m" / "1"
        directory.mkdir(parents=True)
        (directory / "manifest.yaml").write_text("[]")
        loaded = load_model_version(directory / "manifest.yaml", _fake_factory)
        assert isinstance(loaded, InferenceError)


class TestRegisteredModel:
    """A registered model's status and runner."""

    def test_model_without_runner_or_error_is_load_failed(self) -> None:
        """A model with neither runner nor error is not served."""
        model = RegisteredModel(make_manifest(), None)
        assert model.status is ServingStatus.LOAD_FAILED
        with pytest.raises(InferenceError) as caught:
            model.require_runner()
        assert caught.value.code is ErrorCode.MODEL_LOAD_FAILED
