"""Rollout modes of model versions: the state file, which versions run for an event, transitions.

``<registry>/rollout.yaml`` says, per model name and version, which :class:`RolloutMode` the
version is in (and a canary's share of traffic). A model the file does not list keeps the legacy
rule: the manifest with ``default: true`` is active, the other versions are staged.

For an event that names a model by its bare name, :func:`select_versions` decides which versions
run and which result is *published*:

- the **active** version, unless the study falls in the **canary**'s share (chosen by a hash of
  the model name and the study UID, so all images of a study go to the same version and raising
  the percentage only adds studies); then the canary is published and the active version runs
  in shadow beside it, so the two can be compared on the same images;
- every **shadow** version runs as well; its results are kept for comparison, never published.

An event that pins ``name@version`` runs exactly that version (unless it is retired).
Everything here is pure: reading and writing the file is done by the callers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import ConflictError, ErrorCode, InferenceError
from schemas.rollout import RolloutMode
from streams.inference.manifest import MODEL_NAME_PATTERN, MODEL_VERSION_PATTERN

ROLLOUT_FILE = "rollout.yaml"
CANARY_BUCKETS = 10_000  # canary shares are decided in steps of 0.01 %
ROLLOUT_HEADER = (
    "# Rollout mode of each model version (docs/models.md). Written by the registry's promote /\n"
    "# shadow / canary / stage / retire operations, which audit every change; edit by hand only\n"
    "# with the workers stopped. Versions not listed here are 'staged'.\n"
)

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
ModelVersion = Annotated[str, Field(pattern=MODEL_VERSION_PATTERN)]


class VersionRollout(BaseModel):
    """The mode of one version; a canary also has its share of studies in percent."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    mode: RolloutMode
    canary_percent: int | None = Field(None, ge=1, le=99)

    @model_validator(mode="after")
    def _percent_only_for_canary(self) -> VersionRollout:
        if (self.mode is RolloutMode.CANARY) != (self.canary_percent is not None):
            raise ValueError("canary_percent is required for a canary and only for a canary")
        return self

    def describe(self) -> str:
        """``canary:10`` for a canary, else the mode's value (an audit-safe token)."""
        if self.mode is RolloutMode.CANARY:
            return f"canary:{self.canary_percent}"
        return self.mode.value


ACTIVE = VersionRollout(mode=RolloutMode.ACTIVE)
STAGED = VersionRollout(mode=RolloutMode.STAGED)
SHADOW = VersionRollout(mode=RolloutMode.SHADOW)
RETIRED = VersionRollout(mode=RolloutMode.RETIRED)
Modes = Mapping[str, VersionRollout]
"""The modes of one model's versions, by version."""


class RolloutState(BaseModel):
    """The content of ``rollout.yaml``: model name -> version -> mode."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    models: dict[ModelName, dict[ModelVersion, VersionRollout]] = Field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> RolloutState:
        """Parse the file strictly, or raise ``MODEL_LOAD_FAILED`` saying why."""
        try:
            data = yaml.safe_load(text)
            if data is None:
                return cls()
            return cls.model_validate_json(json.dumps(data))
        except (yaml.YAMLError, TypeError, ValueError) as exc:
            detail = (
                "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                    for e in exc.errors()[:3]
                )
                if isinstance(exc, ValidationError)
                else type(exc).__name__
            )
            raise InferenceError(
                ErrorCode.MODEL_LOAD_FAILED, f"invalid {ROLLOUT_FILE}: {detail}"[:500]
            ) from exc

    def dump(self) -> str:
        """The file's text: a header comment, then models and versions sorted."""
        data = {
            name: {
                version: rollout.model_dump(mode="json", exclude_none=True)
                for version, rollout in sorted(versions.items())
            }
            for name, versions in sorted(self.models.items())
        }
        return ROLLOUT_HEADER + yaml.safe_dump({"models": data}, sort_keys=False)

    def with_modes(self, name: str, modes: Modes) -> RolloutState:
        """A copy in which model ``name`` has exactly ``modes``."""
        return RolloutState(models={**self.models, name: dict(modes)})


def effective_modes(
    name: str, defaults: Mapping[str, bool], state: RolloutState
) -> dict[str, VersionRollout]:
    """The mode of every registered version of ``name``.

    Args:
        name: the model name.
        defaults: each registered version's manifest ``default`` flag, by version.
        state: the rollout file; versions it does not list are staged. A model it does not
            list at all keeps the legacy rule (``default: true`` is active).
    """
    listed = state.models.get(name)
    if listed is None:
        return {v: ACTIVE if is_default else STAGED for v, is_default in defaults.items()}
    return {version: listed.get(version, STAGED) for version in defaults}


def mode_problems(name: str, modes: Modes) -> list[str]:
    """Why a model's set of modes cannot serve its bare name (empty when it can)."""
    active = [v for v, r in modes.items() if r.mode is RolloutMode.ACTIVE]
    canaries = [v for v, r in modes.items() if r.mode is RolloutMode.CANARY]
    problems = []
    if len(active) != 1:
        problems.append(f"model {name} has {len(active)} active versions; exactly one is required")
    if len(canaries) > 1:
        problems.append(f"model {name} has {len(canaries)} canary versions; at most one is allowed")
    return problems


def canary_bucket(name: str, key: str) -> int:
    """The study's bucket in ``[0, CANARY_BUCKETS)`` for model ``name`` (stable, uniform).

    Keyed by the model name, not the version: raising a canary from 10 % to 20 % keeps the
    first 10 % of studies on the canary, and a new canary version reuses the same studies.
    """
    digest = hashlib.sha256(f"{name}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % CANARY_BUCKETS


def in_canary(name: str, key: str, percent: int) -> bool:
    """Whether the study keyed ``key`` falls in a ``percent`` % canary of model ``name``."""
    return canary_bucket(name, key) < percent * CANARY_BUCKETS // 100


@dataclass(frozen=True, slots=True)
class Selection:
    """Which versions of one model run for one event: one published, others in shadow."""

    published: str
    shadows: tuple[str, ...] = ()


def select_versions(name: str, modes: Modes, key: str) -> Selection:
    """The versions of ``name`` that run for the event keyed ``key`` (its study UID).

    Raises:
        InferenceError: ``MODEL_LOAD_FAILED`` when the modes cannot serve the bare name.
    """
    problems = mode_problems(name, modes)
    if problems:
        raise InferenceError(ErrorCode.MODEL_LOAD_FAILED, "; ".join(problems))
    active = next(v for v, r in modes.items() if r.mode is RolloutMode.ACTIVE)
    canary = next(
        ((v, r) for v, r in modes.items() if r.mode is RolloutMode.CANARY and r.canary_percent),
        None,
    )
    shadows = sorted(v for v, r in modes.items() if r.mode is RolloutMode.SHADOW)
    if canary is not None and in_canary(name, key, canary[1].canary_percent or 0):
        return Selection(published=canary[0], shadows=(active, *shadows))
    return Selection(published=active, shadows=tuple(shadows))


# ------------------------------------------------------------------------------- transitions


@dataclass(frozen=True, slots=True)
class RolloutChange:
    """One version moving from one mode to another (each change is audited on its own)."""

    name: str
    version: str
    previous: VersionRollout
    current: VersionRollout

    @property
    def model_id(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


def _conflict(reason: str) -> ConflictError:
    return ConflictError(ErrorCode.MODEL_REGISTRY_CONFLICT, reason)


def plan_change(
    name: str, modes: Modes, version: str, target: VersionRollout
) -> list[RolloutChange]:
    """The changes that put ``version`` of ``name`` into ``target`` mode (pure).

    - **active** (promote): the previously active version becomes staged (instantly
      re-promotable for a rollback); a canary or shadow of the promoted version ends with it.
    - **canary**: needs another version that is active; at most one canary per model.
    - **shadow**, **staged**: any version but the active one.
    - **retired**: any version but the active one (promote another version first).

    Returns an empty list when the version is already in ``target`` mode.

    Raises:
        ConflictError: ``MODEL_REGISTRY_CONFLICT`` when the change is not allowed.
    """
    if version not in modes:
        raise _conflict(f"{name}@{version} is not registered")
    current = modes[version]
    if current == target:
        return []
    active = [v for v, r in modes.items() if r.mode is RolloutMode.ACTIVE]
    if current.mode is RolloutMode.ACTIVE:
        raise _conflict(f"{name}@{version} is the active version; promote another version first")
    changes = [RolloutChange(name, version, current, target)]
    if target.mode is RolloutMode.ACTIVE:
        changes += [RolloutChange(name, v, modes[v], STAGED) for v in active]
    elif target.mode is RolloutMode.CANARY:
        if not active:
            raise _conflict(
                f"model {name} has no active version for a canary to share traffic with"
            )
        others = [v for v, r in modes.items() if r.mode is RolloutMode.CANARY and v != version]
        if others:
            raise _conflict(f"{name}@{others[0]} is already a canary; stage or promote it first")
    return changes


def apply_changes(modes: Modes, changes: list[RolloutChange]) -> dict[str, VersionRollout]:
    """``modes`` after ``changes``."""
    updated = dict(modes)
    for change in changes:
        updated[change.version] = change.current
    return updated
