"""The model registry: versioned manifests on disk, verified weights, one default per model.

Layout: ``<registry>/<name>/<version>/manifest.yaml`` plus the weights it names, and
``<registry>/rollout.yaml`` with each version's rollout mode (``streams.inference.rollout``).
Loading is per version and isolated: a bad manifest, a weights file whose SHA-256 differs from
the manifest, or a model the runtime cannot load makes *that* version unavailable (with a code,
visible in :meth:`ModelRegistry.list`); every other model is still served.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from schemas.errors import ErrorCode, InferenceError, ResourceNotFoundError
from schemas.rollout import RolloutMode
from streams.inference.manifest import InputSpec, ModelManifest, parse_manifest, read_model_file
from streams.inference.rollout import (
    ROLLOUT_FILE,
    STAGED,
    RolloutState,
    VersionRollout,
    effective_modes,
    mode_problems,
    select_versions,
)
from streams.inference.runtime import BatchRunner, OnnxSession
from streams.inference.signature import check_signature

MANIFEST_FILE = "manifest.yaml"
MAX_WEIGHTS_BYTES = 2 * 1024**3  # ONNX protobuf limit; larger files are not a single model

SessionFactory = Callable[[bytes, ModelManifest], BatchRunner]


class ServingStatus(StrEnum):
    """Whether a registered model version can be served."""

    AVAILABLE = "available"
    REFUSED = "refused"  # weights do not match their declared SHA-256
    LOAD_FAILED = "load_failed"  # bad manifest, missing weights, runtime could not load


class ModelStatus(BaseModel):
    """One line of ``radstream models list`` and of the API's ``GET /models``."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str
    version: str
    runtime: str | None
    weights_sha256: str | None
    status: ServingStatus
    default: bool
    rollout: RolloutMode = RolloutMode.STAGED
    canary_percent: int | None = None
    clinical_status: str | None
    input: InputSpec | None
    error_code: ErrorCode | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A parsed manifest with its verified runner, or the error that keeps it from serving."""

    manifest: ModelManifest
    runner: BatchRunner | None
    error: InferenceError | None = None

    @property
    def model_id(self) -> str:
        """The exact id ``name@version``."""
        return self.manifest.model_id

    @property
    def status(self) -> ServingStatus:
        """Available, refused (checksum) or failed to load."""
        if self.error is None and self.runner is not None:
            return ServingStatus.AVAILABLE
        if self.error is not None and self.error.code is ErrorCode.MODEL_CHECKSUM_MISMATCH:
            return ServingStatus.REFUSED
        return ServingStatus.LOAD_FAILED

    def require_runner(self) -> BatchRunner:
        """The runner, or the error that keeps this model from being served."""
        if self.runner is None or self.error is not None:
            raise self.error or InferenceError(ErrorCode.MODEL_LOAD_FAILED)
        return self.runner


def sha256_hex(data: bytes) -> str:
    """The lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def onnx_session_factory(
    providers: Sequence[str] = ("CPUExecutionProvider",), intra_op_threads: int = 1
) -> SessionFactory:
    """A factory creating ONNX Runtime sessions with the given providers and threads.

    Each session's graph is checked against its manifest (``MODEL_MANIFEST_MISMATCH``).
    """

    def create(model_bytes: bytes, manifest: ModelManifest) -> BatchRunner:
        session = OnnxSession.create(
            model_bytes,
            input_name=manifest.input.tensor,
            output_name=manifest.output.tensor,
            providers=providers,
            intra_op_threads=intra_op_threads,
        )
        check_signature(manifest, session.signature())
        return session

    return create


def _read_manifest(manifest_path: Path) -> ModelManifest:
    """Parse a manifest file and check it lives in ``<name>/<version>/``."""
    manifest = parse_manifest(read_model_file(manifest_path, "manifest"))
    version_dir = manifest_path.parent
    if (manifest.name, manifest.version) != (version_dir.parent.name, version_dir.name):
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED,
            f"manifest declares {manifest.model_id} but lives in "
            f"{version_dir.parent.name}/{version_dir.name}",
        )
    return manifest


def _read_verified_weights(version_dir: Path, manifest: ModelManifest) -> bytes:
    """The weights' bytes, once their SHA-256 equals the manifest's (else refused)."""
    weights_path = version_dir / manifest.weights.file
    try:
        too_large = weights_path.stat().st_size > MAX_WEIGHTS_BYTES
        weights = b"" if too_large else weights_path.read_bytes()
    except OSError as exc:
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED,
            f"weights file {manifest.weights.file} unreadable: {type(exc).__name__}",
        ) from exc
    if too_large:
        raise InferenceError(ErrorCode.MODEL_LOAD_FAILED, "weights file is too large")
    check_digest(manifest, weights, consequence="the model is not served")
    return weights


def check_digest(manifest: ModelManifest, weights: bytes, *, consequence: str) -> None:
    """Refuse weights whose SHA-256 is not the manifest's (``MODEL_CHECKSUM_MISMATCH``)."""
    digest = sha256_hex(weights)
    if digest != manifest.weights.sha256:
        raise InferenceError(
            ErrorCode.MODEL_CHECKSUM_MISMATCH,
            f"weights of {manifest.model_id} have SHA-256 {digest[:12]}…, the manifest "
            f"declares {manifest.weights.sha256[:12]}…; {consequence}",
        )


def manifest_paths(directory: Path) -> list[Path]:
    """Every ``<name>/<version>/manifest.yaml``, skipping hidden folders (installs in progress)."""
    return sorted(
        path
        for path in directory.glob(f"*/*/{MANIFEST_FILE}")
        if not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def read_rollout(directory: Path) -> RolloutState:
    """The registry's ``rollout.yaml``; empty (legacy defaults) when there is none.

    Raises:
        InferenceError: ``MODEL_LOAD_FAILED`` when the file is unreadable or invalid: a
            typo must stop the worker rather than serve the wrong version.
    """
    path = directory / ROLLOUT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RolloutState()
    except OSError as exc:
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED, f"{ROLLOUT_FILE} unreadable: {type(exc).__name__}"
        ) from exc
    return RolloutState.parse(text)


def load_model_version(
    manifest_path: Path, session_factory: SessionFactory
) -> RegisteredModel | InferenceError:
    """Load one version: parse, check the location, verify the weights, create the runner.

    Returns the error itself when the manifest cannot be read as a manifest (there is no
    model to attach it to); later problems are recorded on the returned model.
    """
    try:
        manifest = _read_manifest(manifest_path)
    except InferenceError as exc:
        return exc
    try:
        weights = _read_verified_weights(manifest_path.parent, manifest)
        runner = session_factory(weights, manifest)
    except InferenceError as exc:
        return RegisteredModel(manifest, None, exc)
    return RegisteredModel(manifest, runner)


class ModelRegistry:
    """Every registered model version, resolvable as ``name`` (default) or ``name@version``."""

    def __init__(
        self,
        models: Iterable[RegisteredModel],
        broken: Iterable[tuple[str, str, InferenceError]] = (),
        rollout: RolloutState | None = None,
    ) -> None:
        self._models: dict[tuple[str, str], RegisteredModel] = {}
        for model in models:
            key = (model.manifest.name, model.manifest.version)
            if key in self._models:
                raise ValueError(f"{model.model_id} registered twice")
            self._models[key] = model
        self._broken = {(name, version): error for name, version, error in broken}
        self.rollout = rollout or RolloutState()
        self._modes: dict[str, dict[str, VersionRollout]] = {}
        self._defaults: dict[str, RegisteredModel] = {}
        self._default_errors: dict[str, InferenceError] = {}
        for name in sorted({name for name, _ in self._models}):
            defaults = {
                version: model.manifest.default
                for (model_name, version), model in self._models.items()
                if model_name == name
            }
            modes = effective_modes(name, defaults, self.rollout)
            self._modes[name] = modes
            problems = mode_problems(name, modes)
            if problems:
                self._default_errors[name] = InferenceError(
                    ErrorCode.MODEL_LOAD_FAILED,
                    "; ".join(problems) + " (name@version still works)",
                )
            else:
                active = next(v for v, r in modes.items() if r.mode is RolloutMode.ACTIVE)
                self._defaults[name] = self._models[(name, active)]

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 1,
        session_factory: SessionFactory | None = None,
    ) -> ModelRegistry:
        """Scan ``directory`` for manifests, verify every weights file and create its session.

        Raises ``MODEL_LOAD_FAILED`` only when the directory itself does not exist; problems of
        single versions are recorded on them instead.
        """
        if not directory.is_dir():
            raise InferenceError(
                ErrorCode.MODEL_LOAD_FAILED, f"model registry directory {directory} not found"
            )
        factory = session_factory or onnx_session_factory(providers, intra_op_threads)
        rollout = read_rollout(directory)
        models: list[RegisteredModel] = []
        broken: list[tuple[str, str, InferenceError]] = []
        for manifest_path in manifest_paths(directory):
            loaded = load_model_version(manifest_path, factory)
            if isinstance(loaded, RegisteredModel):
                models.append(loaded)
            else:
                broken.append((manifest_path.parent.parent.name, manifest_path.parent.name, loaded))
        return cls(models, broken, rollout)

    def models(self) -> list[RegisteredModel]:
        """Every version whose manifest loaded (served or not), sorted by name and version."""
        return [self._models[key] for key in sorted(self._models)]

    def mode(self, name: str, version: str) -> VersionRollout:
        """The rollout mode of a registered version (staged for one that did not load)."""
        return self._modes.get(name, {}).get(version, STAGED)

    def modes(self, name: str) -> dict[str, VersionRollout]:
        """The rollout modes of every loaded version of ``name``."""
        return dict(self._modes.get(name, {}))

    def knows(self, model_id: str) -> bool:
        """Whether ``model_id`` names a registered model or version (served or not)."""
        name, _, version = model_id.partition("@")
        if version:
            return (name, version) in self._models or (name, version) in self._broken
        return name in self._defaults or name in self._default_errors

    def resolve(self, model_id: str) -> RegisteredModel:
        """The servable model for ``name`` (its default) or ``name@version``.

        Raises:
            ResourceNotFoundError: ``MODEL_NOT_FOUND`` when nothing is registered under the id.
            InferenceError: ``MODEL_CHECKSUM_MISMATCH`` or ``MODEL_LOAD_FAILED`` when it is
                registered but cannot be served.
        """
        name, _, version = model_id.partition("@")
        if version:
            if (name, version) in self._broken:
                raise self._broken[(name, version)]
            model = self._models.get((name, version))
            if model is not None and self.mode(name, version).mode is RolloutMode.RETIRED:
                raise ResourceNotFoundError(
                    ErrorCode.MODEL_VERSION_RETIRED, f"{model.model_id} is retired"
                )
        else:
            if name in self._default_errors:
                raise self._default_errors[name]
            model = self._defaults.get(name)
        if model is None:
            raise ResourceNotFoundError(
                ErrorCode.MODEL_NOT_FOUND, f"model {model_id[:100]!r} is not registered"
            )
        model.require_runner()
        return model

    def select(self, model_id: str, key: str) -> list[tuple[RegisteredModel, bool]]:
        """The versions that run for one event: ``(model, shadow)`` pairs, published first.

        A pinned ``name@version`` runs that version alone. A bare name runs the version
        :func:`~streams.inference.rollout.select_versions` publishes for ``key`` (the study
        UID), then its shadows; a shadow that cannot be served is left out (a shadow never
        affects published traffic; its status shows in :meth:`list`).

        Raises:
            RadstreamError: as :meth:`resolve`, for the published version.
        """
        name, _, version = model_id.partition("@")
        if version or name not in self._modes:
            return [(self.resolve(model_id), False)]
        if name in self._default_errors:
            raise self._default_errors[name]
        selection = select_versions(name, self._modes[name], key)
        chosen = [(self.resolve(f"{name}@{selection.published}"), False)]
        for shadow in selection.shadows:
            model = self._models[(name, shadow)]
            if model.status is ServingStatus.AVAILABLE:
                chosen.append((model, True))
        return chosen

    def list(self) -> list[ModelStatus]:
        """Every registered version with its serving status, sorted by name and version."""
        rows = [
            ModelStatus(
                name=model.manifest.name,
                version=model.manifest.version,
                runtime=model.manifest.runtime,
                weights_sha256=model.manifest.weights.sha256,
                status=model.status,
                default=self._defaults.get(model.manifest.name) is model,
                rollout=self.mode(*key).mode,
                canary_percent=self.mode(*key).canary_percent,
                clinical_status=model.manifest.status,
                input=model.manifest.input,
                error_code=model.error.code if model.error else None,
                reason=model.error.reason if model.error else None,
            )
            for key, model in self._models.items()
        ]
        rows.extend(
            ModelStatus(
                name=name,
                version=version,
                runtime=None,
                weights_sha256=None,
                status=ServingStatus.LOAD_FAILED,
                default=False,
                clinical_status=None,
                input=None,
                error_code=error.code,
                reason=error.reason,
            )
            for (name, version), error in self._broken.items()
        )
        return sorted(rows, key=lambda row: (row.name, row.version))
