"""Bring your own model: add a version, change its rollout mode, show it (registry operations).

These are the library behind ``radstream models add|scaffold|promote|shadow|canary|stage|retire|
show``. They work on the registry directory the workers load (``<name>/<version>/`` folders and
``rollout.yaml``), one operation at a time under a file lock, and audit what they do:

- **add** verifies everything the workers would (manifest schema, the graph's tensors against
  the manifest, a trial run on a blank batch, the weights' digest, a model card), installs the
  version atomically (built in a hidden folder, then renamed into place) as **staged**;
- **change_rollout** (``promote``, ``retire`` and the other modes) plans the change with
  :func:`~streams.inference.rollout.plan_change`, refuses to put a version that cannot be
  served into traffic, and rewrites ``rollout.yaml`` atomically.

Every change publishes one :class:`~schemas.audit.ApiAction` per version *before* it is applied
(``publish`` is injected: the command line hands the api.actions producer in, tests a list), so
no change exists without its audit record; if applying then fails, a failure action follows.
Refused attempts are audited as failures too. Workers read the registry when they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from schemas.audit import ApiAction, ApiActionKind
from schemas.correlation import new_correlation_id
from schemas.errors import (
    ConflictError,
    ErrorCode,
    InferenceError,
    InputValidationError,
    RadstreamError,
    ResourceNotFoundError,
    TransientError,
    error_for,
)
from schemas.events import utc_now
from schemas.rollout import RolloutMode
from streams.inference.manifest import (
    MODEL_NAME_PATTERN,
    MODEL_VERSION_PATTERN,
    ModelManifest,
    parse_manifest,
)
from streams.inference.registry import (
    MANIFEST_FILE,
    MAX_WEIGHTS_BYTES,
    ModelStatus,
    RegisteredModel,
    SessionFactory,
    check_digest,
    load_model_version,
    manifest_paths,
    onnx_session_factory,
    read_rollout,
    sha256_hex,
)
from streams.inference.rollout import (
    ACTIVE,
    RETIRED,
    ROLLOUT_FILE,
    STAGED,
    RolloutChange,
    VersionRollout,
    apply_changes,
    effective_modes,
    plan_change,
)
from streams.inference.runtime import describe_graph
from streams.inference.signature import GraphSignature, TensorInfo

Publish = Callable[[Sequence[ApiAction]], Awaitable[None]]
"""Publishes audit actions on ``api.actions`` (and returns once the broker confirmed them)."""

LOCK_FILE = ".registry.lock"
LOCK_TIMEOUT_SECONDS = 30.0
MAX_CARD_BYTES = 1024 * 1024
MAX_MANIFEST_CHARS = 64 * 1024
TODO = "TODO"
OPERATOR_ROLES = ("operator",)
_ACTOR_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")
_SERVING_MODES = frozenset({RolloutMode.ACTIVE, RolloutMode.CANARY, RolloutMode.SHADOW})
_VERBS = {
    RolloutMode.ACTIVE: "promote",
    RolloutMode.CANARY: "canary",
    RolloutMode.SHADOW: "shadow",
    RolloutMode.STAGED: "stage",
    RolloutMode.RETIRED: "retire",
}


# ------------------------------------------------------------------------------- small helpers


def _invalid(reason: str) -> InputValidationError:
    return InputValidationError(ErrorCode.REQUEST_INVALID, reason[:500])


def check_actor(actor: str) -> str:
    """The operator's pseudonymous id, or ``REQUEST_INVALID`` (it goes into the audit trail)."""
    if not _ACTOR_RE.fullmatch(actor):
        raise _invalid("the actor must be a pseudonymous id: letters, digits and ._@:- only")
    return actor


def split_model_id(model_id: str) -> tuple[str, str]:
    """``name@version`` as its parts; ``REQUEST_INVALID`` for anything else."""
    name, _, version = model_id.partition("@")
    if not (
        re.fullmatch(MODEL_NAME_PATTERN, name) and re.fullmatch(MODEL_VERSION_PATTERN, version)
    ):
        raise _invalid(f"{model_id[:100]!r} is not name@version")
    return name, version


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old or the new file, never half."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def registry_lock(
    directory: Path, *, wait_seconds: float = LOCK_TIMEOUT_SECONDS
) -> AsyncIterator[None]:
    """Hold the registry's exclusive lock (one change at a time), waiting at most ``wait_seconds``.

    Raises:
        TransientError: ``TIMEOUT`` when another operation holds the lock for too long.
        InferenceError: ``MODEL_LOAD_FAILED`` when the directory does not exist.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    try:
        descriptor = os.open(directory / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED,
            f"model registry directory {directory} cannot be locked: {type(exc).__name__}",
        ) from exc
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if loop.time() >= deadline:
                    raise TransientError(
                        ErrorCode.TIMEOUT,
                        f"another registry operation held the lock for {wait_seconds:g} s",
                    ) from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _versions(directory: Path, name: str) -> dict[str, ModelManifest]:
    """The parseable manifests of every installed version of ``name``."""
    found = {}
    for path in manifest_paths(directory):
        if path.parent.parent.name != name:
            continue
        with contextlib.suppress(InferenceError, OSError):
            found[path.parent.name] = parse_manifest(path.read_text(encoding="utf-8"))
    return found


def _modes(directory: Path, name: str) -> dict[str, VersionRollout]:
    manifests = _versions(directory, name)
    return effective_modes(
        name, {v: m.default for v, m in manifests.items()}, read_rollout(directory)
    )


# ------------------------------------------------------------------------------- audit actions


def model_action(
    kind: ApiActionKind,
    *,
    name: str,
    version: str,
    actor: str,
    at: datetime,
    correlation_id: str,
    verb: str,
    weights_sha256: str | None = None,
    change: RolloutChange | None = None,
    error: RadstreamError | None = None,
) -> ApiAction:
    """The audit action of one model registry change (or refused attempt) by ``actor``."""
    current = change.current if change else None
    return ApiAction(
        action=kind,
        occurred_at=at,
        actor_id=actor,
        roles=OPERATOR_ROLES,
        outcome="failure" if error else "success",
        http_status=error.http_status if error else 200,
        route=f"cli/models/{verb}",
        correlation_id=correlation_id,
        error_code=error.code if error else None,
        model_name=name,
        model_version=version,
        weights_sha256=weights_sha256,
        rollout_mode=current.mode if current else None,
        previous_rollout_mode=change.previous.mode if change else None,
        canary_percent=current.canary_percent if current else None,
    )


async def _audit_refusal(publish: Publish, actions: Sequence[ApiAction]) -> None:
    """Publish the failure actions of a refused or failed operation, best effort.

    The operation's own error is what the operator must see; a broker outage while auditing
    the refusal must not replace it (the refusal changed nothing).
    """
    with contextlib.suppress(RadstreamError, OSError, asyncio.TimeoutError):
        await publish(actions)


# ------------------------------------------------------------------------------- scaffold


def _layout_of(shape: tuple[int | None, ...] | None) -> tuple[str, Any, Any, Any]:
    """Layout, channels, height and width guessed from an input shape (TODO when unknown)."""
    unknown = f"{TODO}: the size the model expects"
    if shape is None or len(shape) != 4:
        return "NCHW", f"{TODO}: 1 or 3", unknown, unknown
    if shape[1] in (1, 3):
        return "NCHW", shape[1], shape[2] or unknown, shape[3] or unknown
    if shape[3] in (1, 3):
        return "NHWC", shape[3], shape[1] or unknown, shape[2] or unknown
    return "NCHW", f"{TODO}: 1 or 3", unknown, unknown


def scaffold_manifest(
    weights: bytes,
    *,
    name: str,
    version: str,
    labels: Sequence[str] = (),
    modalities: Sequence[str] = (),
    normalisation: Mapping[str, Any] | None = None,
    intended_use: str | None = None,
    score_meaning: str | None = None,
    signature: GraphSignature | None = None,
) -> str:
    """A manifest for ``weights`` filled in from its graph and the given facts.

    What the graph cannot tell (what the labels mean, how to normalise, the intended use) and
    was not given is left as a ``TODO`` value, which :func:`add_model` refuses: a scaffold must
    be reviewed by a person before the model serves anyone.
    """
    signature = signature or describe_graph(weights)
    first_input: TensorInfo = signature.inputs[0]
    first_output: TensorInfo = signature.outputs[0]
    layout, channels, height, width = _layout_of(first_input.shape)
    out_shape = first_output.shape
    count = out_shape[1] if out_shape is not None and len(out_shape) == 2 else None
    if labels and count is not None and len(labels) != count:
        raise InferenceError(
            ErrorCode.MODEL_MANIFEST_MISMATCH,
            f"the graph returns {count} scores per image, {len(labels)} labels were given",
        )
    label_list = list(labels) or [f"{TODO}_label_{i + 1}" for i in range(count or 1)]
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "runtime": "onnxruntime",
        "status": "TODO: e.g. research use only — not for clinical use",
        "intended_use": intended_use or f"{TODO}: what the model is for, and not for",
        "model_card": "MODEL_CARD.md",
        "weights": {"file": "model.onnx", "sha256": sha256_hex(weights)},
        "input": {
            "tensor": first_input.name,
            "modalities": list(modalities),
            "channels": channels,
            "height": height,
            "width": width,
            "layout": layout,
            "normalisation": dict(normalisation)
            if normalisation
            else {"kind": f"{TODO}: window (center, width), minmax or zscore (mean, std)"},
        },
        "output": {
            "tensor": first_output.name,
            "labels": label_list,
            "score_meaning": score_meaning or f"{TODO}: what a score of 0..1 means",
            "thresholds": dict.fromkeys(label_list, 0.5),
            "negative_decision": "no_finding",
        },
    }
    header = (
        f"# Scaffolded from the ONNX graph of {name}@{version} (docs/models.md).\n"
        "# Replace every TODO value; choose thresholds on your own validation data; add\n"
        "# input.expected_statistics (the input guard) and reference (drift) from it too.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def placeholders(data: object, path: str = "") -> list[str]:
    """The dotted paths of every value (or key) still holding a ``TODO`` placeholder."""
    if isinstance(data, Mapping):
        return [
            found
            for key, value in data.items()
            for found in ([f"{path}{key}"] if str(key).startswith(TODO) else [])
            + placeholders(value, f"{path}{key}.")
        ]
    if isinstance(data, list | tuple):
        return [found for i, v in enumerate(data) for found in placeholders(v, f"{path}{i}.")]
    return [path.rstrip(".")] if isinstance(data, str) and data.startswith(TODO) else []


# ------------------------------------------------------------------------------- add


@dataclass(frozen=True, slots=True)
class AddedModel:
    """A version installed by :func:`add_model`."""

    manifest: ModelManifest
    directory: Path
    mode: VersionRollout


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        if path.stat().st_size > limit:
            raise _invalid(f"the {what} is larger than {limit} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise _invalid(f"the {what} cannot be read: {type(exc).__name__}") from exc
    if not data.strip():
        raise _invalid(f"the {what} is empty")
    return data


def prepare_manifest(manifest_text: str, weights: bytes) -> ModelManifest:
    """The manifest to install: placeholders refused, weights filled in, digest checked.

    Raises:
        InputValidationError: ``REQUEST_INVALID`` while TODO placeholders remain.
        InferenceError: ``MODEL_LOAD_FAILED`` for an invalid manifest,
            ``MODEL_CHECKSUM_MISMATCH`` when it declares another digest than the file's.
    """
    if len(manifest_text) > MAX_MANIFEST_CHARS:
        raise _invalid(f"the manifest is longer than {MAX_MANIFEST_CHARS} characters")
    try:
        data = yaml.safe_load(manifest_text)
    except yaml.YAMLError as exc:
        raise InferenceError(
            ErrorCode.MODEL_LOAD_FAILED, f"manifest is not valid YAML: {type(exc).__name__}"
        ) from exc
    todo = placeholders(data)
    if todo:
        raise _invalid(f"the manifest still has TODO placeholders: {', '.join(todo[:8])}")
    digest = sha256_hex(weights)
    if isinstance(data, dict):
        data.setdefault("weights", {"file": "model.onnx", "sha256": digest})
    manifest = parse_manifest(yaml.safe_dump(data, allow_unicode=True))
    check_digest(manifest, weights, consequence="not installed")
    return manifest


def trial_run(runner: Any, manifest: ModelManifest) -> None:
    """Run two blank images: the graph must return one finite row of scores per image.

    Catches what static shapes cannot (an output declared dynamic that is not, a graph that
    cannot batch), before the model meets real traffic.
    """
    spec = manifest.input
    shape = (
        (2, spec.channels, spec.height, spec.width)
        if spec.layout == "NCHW"
        else (2, spec.height, spec.width, spec.channels)
    )
    try:
        scores = np.asarray(runner.run_batch(np.zeros(shape, dtype=np.float32)))
    except Exception as exc:  # any failure of a foreign graph refuses it (re-raised)
        detail = exc.reason if isinstance(exc, RadstreamError) else type(exc).__name__
        raise InferenceError(
            ErrorCode.MODEL_MANIFEST_MISMATCH,
            f"a trial run on 2 blank {spec.layout} images failed: {detail}"[:500],
        ) from exc
    expected = (2, len(manifest.output.labels))
    if scores.shape != expected or not np.isfinite(scores).all():
        raise InferenceError(
            ErrorCode.MODEL_MANIFEST_MISMATCH,
            f"a trial run on 2 blank images returned {scores.shape} "
            f"{'finite' if np.isfinite(scores).all() else 'non-finite'} scores, expected "
            f"{expected} finite scores",
        )


def _manifest_text(manifest: ModelManifest) -> str:
    data = manifest.model_dump(mode="json", exclude_none=True)
    if not manifest.default:
        del data["default"]  # rollout.yaml decides the mode; do not suggest otherwise
    return (
        "# Installed by radstream models add (docs/models.md); weights verified.\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    )


def _stage_version(
    registry_dir: Path, manifest: ModelManifest, weights: bytes, card: bytes
) -> tuple[Path, Path]:
    """Write the version into a hidden folder: (``.install-…`` root, its version folder)."""
    staging = registry_dir / f".install-{uuid.uuid4().hex}"
    version_dir = staging / manifest.name / manifest.version
    version_dir.mkdir(parents=True)
    (version_dir / manifest.weights.file).write_bytes(weights)
    (version_dir / manifest.model_card).write_bytes(card)
    write_text_atomic(version_dir / MANIFEST_FILE, _manifest_text(manifest))
    return staging, version_dir


async def add_model(
    registry_dir: Path,
    onnx_path: Path,
    card_path: Path,
    manifest_text: str,
    *,
    actor: str,
    publish: Publish,
    clock: Callable[[], datetime] = utc_now,
    session_factory: SessionFactory | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> AddedModel:
    """Verify and install one new model version as **staged**, audited as ``model_add``.

    Raises:
        RadstreamError: ``REQUEST_INVALID`` (actor, card, TODOs), ``MODEL_LOAD_FAILED``
            (manifest, graph), ``MODEL_MANIFEST_MISMATCH`` (tensors, trial run),
            ``MODEL_CHECKSUM_MISMATCH`` (declared digest), ``MODEL_REGISTRY_CONFLICT``
            (the version exists), ``TIMEOUT`` (lock). Nothing is installed then.
    """
    check_actor(actor)
    weights = _read_limited(onnx_path, MAX_WEIGHTS_BYTES, "ONNX file")
    card = _read_limited(card_path, MAX_CARD_BYTES, "model card")
    try:
        card.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid("the model card must be UTF-8 text (Markdown)") from exc
    manifest = prepare_manifest(manifest_text, weights)
    trial_run((session_factory or onnx_session_factory())(weights, manifest), manifest)
    correlation = new_correlation_id()
    action = model_action(
        ApiActionKind.MODEL_ADD,
        name=manifest.name,
        version=manifest.version,
        actor=actor,
        at=clock(),
        correlation_id=correlation,
        verb="add",
        weights_sha256=manifest.weights.sha256,
    )
    async with registry_lock(registry_dir, wait_seconds=lock_timeout):
        target = registry_dir / manifest.name / manifest.version
        if target.exists():
            conflict = ConflictError(
                ErrorCode.MODEL_REGISTRY_CONFLICT,
                f"{manifest.model_id} is already installed; versions are immutable, "
                f"choose a new version",
            )
            await _audit_refusal(publish, [_failed(action, conflict)])
            raise conflict
        staging, version_dir = _stage_version(registry_dir, manifest, weights, card)
        try:
            # What the workers will do with the installed files, on the files as written.
            _loadable(version_dir, session_factory or onnx_session_factory())
            state = read_rollout(registry_dir)
            modes = _modes(registry_dir, manifest.name)
            new_state = state.with_modes(manifest.name, {**modes, manifest.version: STAGED})
            await publish([action])
            try:
                target.parent.mkdir(exist_ok=True)
                version_dir.rename(target)
                write_text_atomic(registry_dir / ROLLOUT_FILE, new_state.dump())
            except OSError as exc:
                shutil.rmtree(target, ignore_errors=True)
                error = error_for(
                    ErrorCode.INTERNAL_ERROR, f"installing failed: {type(exc).__name__}"
                )
                await _audit_refusal(publish, [_failed(action, error)])
                raise error from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return AddedModel(manifest, target, STAGED)


def _failed(action: ApiAction, error: RadstreamError) -> ApiAction:
    return action.model_copy(
        update={
            "outcome": "failure",
            "http_status": error.http_status,
            "error_code": error.code,
        }
    )


# ------------------------------------------------------------------------------- rollout


def _loadable(version_dir: Path, factory: SessionFactory) -> RegisteredModel:
    """The version as the workers load it, or the error that keeps it from being served."""
    loaded = load_model_version(version_dir / MANIFEST_FILE, factory)
    if isinstance(loaded, InferenceError):
        raise loaded
    if loaded.error is not None:
        raise loaded.error
    return loaded


def _servable(registry_dir: Path, name: str, version: str, factory: SessionFactory) -> None:
    """Refuse to put a version into traffic that the workers could not serve."""
    try:
        _loadable(registry_dir / name / version, factory)
    except InferenceError as exc:
        raise ConflictError(
            ErrorCode.MODEL_REGISTRY_CONFLICT,
            f"{name}@{version} cannot be served ({exc.code.value}); it stays out of traffic",
        ) from exc


def _plan(
    registry_dir: Path,
    name: str,
    version: str,
    target: VersionRollout,
    session_factory: SessionFactory | None,
) -> tuple[dict[str, VersionRollout], list[RolloutChange]]:
    """The model's current modes and the changes ``target`` needs, checked to be allowed."""
    modes = _modes(registry_dir, name)
    if version not in modes:
        raise ResourceNotFoundError(ErrorCode.MODEL_NOT_FOUND, f"{name}@{version} is not installed")
    changes = plan_change(name, modes, version, target)
    if changes and target.mode in _SERVING_MODES:
        _servable(registry_dir, name, version, session_factory or onnx_session_factory())
    return modes, changes


async def change_rollout(
    registry_dir: Path,
    model_id: str,
    target: VersionRollout,
    *,
    actor: str,
    publish: Publish,
    clock: Callable[[], datetime] = utc_now,
    session_factory: SessionFactory | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> list[RolloutChange]:
    """Put ``model_id`` (``name@version``) into ``target`` mode, auditing each change.

    A promotion also stages the previously active version. Returns the changes (empty when
    the version already was in that mode: nothing to audit).

    Raises:
        RadstreamError: ``REQUEST_INVALID`` (id, actor), ``MODEL_NOT_FOUND``,
            ``MODEL_REGISTRY_CONFLICT`` (not allowed, or the version cannot be served),
            ``MODEL_LOAD_FAILED`` (an invalid rollout.yaml), ``TIMEOUT`` (lock).
    """
    check_actor(actor)
    name, version = split_model_id(model_id)
    verb = _VERBS[target.mode]
    correlation = new_correlation_id()
    at = clock()

    def action(
        change: RolloutChange | None = None, error: RadstreamError | None = None
    ) -> ApiAction:
        return model_action(
            ApiActionKind.MODEL_ROLLOUT,
            name=name,
            version=change.version if change else version,
            actor=actor,
            at=at,
            correlation_id=correlation,
            verb=verb,
            change=change,
            error=error,
        )

    async with registry_lock(registry_dir, wait_seconds=lock_timeout):
        try:
            modes, changes = _plan(registry_dir, name, version, target, session_factory)
        except (ConflictError, ResourceNotFoundError) as exc:
            await _audit_refusal(publish, [action(error=exc)])
            raise
        if not changes:
            return []
        new_state = read_rollout(registry_dir).with_modes(name, apply_changes(modes, changes))
        await publish([action(change) for change in changes])
        try:
            write_text_atomic(registry_dir / ROLLOUT_FILE, new_state.dump())
        except OSError as exc:
            error = error_for(
                ErrorCode.INTERNAL_ERROR,
                f"{ROLLOUT_FILE} could not be written: {type(exc).__name__}",
            )
            await _audit_refusal(publish, [action(c, error) for c in changes])
            raise error from exc
    return changes


async def promote(registry_dir: Path, model_id: str, **options: Any) -> list[RolloutChange]:
    """Make ``model_id`` the active version (the previous active one becomes staged)."""
    return await change_rollout(registry_dir, model_id, ACTIVE, **options)


async def retire(registry_dir: Path, model_id: str, **options: Any) -> list[RolloutChange]:
    """Retire ``model_id``: it never runs again, and events pinning it are refused."""
    return await change_rollout(registry_dir, model_id, RETIRED, **options)


# ------------------------------------------------------------------------------- compare


def comparison_versions(
    registry_dir: Path, name: str, *, candidate: str | None = None, baseline: str | None = None
) -> tuple[str, str]:
    """The ``(baseline, candidate)`` versions of ``name`` a comparison is about.

    By default the baseline is the active version and the candidate the canary, else the one
    version in shadow; either can be named instead (e.g. a version shadowed last week).

    Raises:
        RadstreamError: ``MODEL_NOT_FOUND`` (model or named version not installed),
            ``REQUEST_INVALID`` (no candidate to default to, or both the same version).
    """
    modes = _modes(registry_dir, name)
    if not modes:
        raise ResourceNotFoundError(
            ErrorCode.MODEL_NOT_FOUND, f"model {name[:64]!r} is not installed"
        )

    def only(mode: RolloutMode) -> str | None:
        found = sorted(v for v, r in modes.items() if r.mode is mode)
        return found[0] if len(found) == 1 else None

    baseline = baseline or only(RolloutMode.ACTIVE)
    candidate = candidate or only(RolloutMode.CANARY) or only(RolloutMode.SHADOW)
    if baseline is None or candidate is None:
        raise _invalid(
            f"model {name} has no single canary or shadow version to compare: name the candidate"
        )
    for version in (baseline, candidate):
        if version not in modes:
            raise ResourceNotFoundError(
                ErrorCode.MODEL_NOT_FOUND, f"{name}@{version[:32]} is not installed"
            )
    if baseline == candidate:
        raise _invalid(f"{name}@{candidate} cannot be compared with itself")
    return baseline, candidate


# ------------------------------------------------------------------------------- show


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """What ``radstream models show`` prints about one version."""

    manifest: ModelManifest
    status: ModelStatus
    directory: Path
    card: str
    versions: dict[str, VersionRollout]


def show_model(
    registry_dir: Path, model_id: str, *, session_factory: SessionFactory | None = None
) -> ModelDetails:
    """One version's manifest, verified serving status, rollout mode and model card.

    ``model_id`` may be a bare name (its active version) or ``name@version``.

    Raises:
        RadstreamError: ``MODEL_NOT_FOUND``, or the reason the version cannot be read.
    """
    name, _, version = model_id.partition("@")
    modes = _modes(registry_dir, name)
    if not version:
        version = next((v for v, r in modes.items() if r.mode is RolloutMode.ACTIVE), "")
    if version not in modes:
        raise ResourceNotFoundError(
            ErrorCode.MODEL_NOT_FOUND, f"model {model_id[:100]!r} is not installed"
        )
    directory = registry_dir / name / version
    loaded = load_model_version(
        directory / MANIFEST_FILE, session_factory or onnx_session_factory()
    )
    if isinstance(loaded, RadstreamError):
        raise loaded
    manifest = loaded.manifest
    mode = modes[version]
    status = ModelStatus(
        name=name,
        version=version,
        runtime=manifest.runtime,
        weights_sha256=manifest.weights.sha256,
        status=loaded.status,
        default=mode.mode is RolloutMode.ACTIVE,
        rollout=mode.mode,
        canary_percent=mode.canary_percent,
        clinical_status=manifest.status,
        input=manifest.input,
        error_code=loaded.error.code if loaded.error else None,
        reason=loaded.error.reason if loaded.error else None,
    )
    try:
        card = (directory / manifest.model_card).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        card = ""
    return ModelDetails(manifest, status, directory, card, modes)


def render_details(details: ModelDetails) -> list[str]:
    """``models show`` as text lines (no patient data exists in a model's description)."""
    manifest, status = details.manifest, details.status
    mode = details.versions[status.version].describe()
    spec = manifest.input
    lines = [
        f"{manifest.model_id}  {status.status.value}"
        + (f" ({status.error_code}: {status.reason})" if status.error_code else ""),
        f"  rollout      {mode}",
        f"  status       {manifest.status}",
        f"  weights      {manifest.weights.file} sha256 {manifest.weights.sha256}",
        f"  input        {spec.tensor} {spec.layout} {spec.channels}x{spec.height}x{spec.width}"
        f" {spec.normalisation.kind}; modalities {', '.join(spec.modalities) or 'any'}",
        f"  output       {manifest.output.tensor}: "
        + ", ".join(f"{k} >= {v:g}" for k, v in manifest.output.thresholds.items())
        + f" else {manifest.output.negative_decision}",
        "  input guard  "
        + (
            "; ".join(
                f"{k.value} in [{r.min:g}, {r.max:g}]" for k, r in spec.expected_statistics.items()
            )
            or "none declared"
        ),
        f"  reference    {manifest.reference.source if manifest.reference else 'none declared'}",
        f"  directory    {details.directory}",
        f"  intended use {manifest.intended_use}",
        "  versions     "
        + ", ".join(f"{v} {r.describe()}" for v, r in sorted(details.versions.items())),
    ]
    heading = next((line for line in details.card.splitlines() if line.strip()), "")
    lines.append(f"  model card   {manifest.model_card}: {heading or '(missing)'}")
    return lines
