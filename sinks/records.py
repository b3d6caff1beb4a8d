"""Read models the repositories return: plain frozen pydantic objects, never ORM rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import (
    ImageArrived,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    Stage,
)
from schemas.rollout import ResultRole
from sinks.tables import LifecycleState


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class InferenceResultRecord(_Record):
    """One stored inference result with its provenance and verification state."""

    result_id: uuid.UUID
    event_id: uuid.UUID
    correlation_id: str
    model_name: str
    model_version: str
    weights_sha256: str
    runtime: str
    provider: str
    input_sha256: str
    verdicts: list[dict[str, Any]]
    thresholds: dict[str, float]
    scores: dict[str, float]
    decision: str
    inference_seconds: float
    batch_size: int
    requested_by: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    modality: str | None
    source: str | None
    occurred_at: datetime
    completed_at: datetime
    stored_at: datetime
    verified_by: str | None
    verified_at: datetime | None
    verification_note: str | None
    role: ResultRole = ResultRole.PUBLISHED

    @property
    def verified(self) -> bool:
        """Whether a user has verified this result."""
        return self.verified_at is not None


class ComparedResult(_Record):
    """The part of a stored result (either role) the comparison of two versions reads."""

    event_id: uuid.UUID
    model_name: str
    model_version: str
    decision: str
    scores: dict[str, float]
    inference_seconds: float


class Page(_Record):
    """One page of results; pass ``next_cursor`` back to get the next, ``None`` at the end."""

    items: tuple[InferenceResultRecord, ...]
    next_cursor: str | None


def _split_model_id(model_id: str | None) -> tuple[str | None, str | None]:
    """``"name@version"`` → ``("name", "version")``; a bare name has no version."""
    if model_id is None:
        return None, None
    name, _, version = model_id.partition("@")
    return name, version or None


class LifecycleEntry(_Record):
    """One step in the life of an arrival (a row of ``image_events``)."""

    event_id: uuid.UUID
    state: LifecycleState
    at: datetime
    error_code: str | None = None
    stage: str | None = Field(None, max_length=32)
    detail: str | None = Field(None, max_length=500)
    model_name: str | None = None
    model_version: str | None = None
    requested_by: str | None = Field(None, max_length=64)
    role: ResultRole = ResultRole.PUBLISHED

    @classmethod
    def arrived(cls, event: ImageArrived) -> LifecycleEntry:
        """The router announced the image."""
        return cls(
            event_id=event.event_id,
            state=LifecycleState.ARRIVED,
            at=event.occurred_at,
            requested_by=event.requested_by,
        )

    @classmethod
    def validated(cls, event: ImageValidated) -> LifecycleEntry:
        """The image passed validation."""
        return cls(
            event_id=event.event_id,
            state=LifecycleState.VALIDATED,
            at=event.validated_at,
            stage=Stage.VALIDATION.value,
            requested_by=event.requested_by,
        )

    @classmethod
    def rejected(
        cls, event: ImageRejected, role: ResultRole = ResultRole.PUBLISHED
    ) -> LifecycleEntry:
        """A stage gave up on the image: ``failed`` during inference or later, else ``rejected``.

        ``role`` is ``shadow`` for the failure of a version running in shadow: kept for the
        comparison of versions, never part of the image's lifecycle as the API shows it.
        """
        late = event.stage in (Stage.INFERENCE, Stage.RESULTS_SINK)
        name, version = _split_model_id(event.model_id)
        return cls(
            event_id=event.event_id,
            state=LifecycleState.FAILED if late else LifecycleState.REJECTED,
            at=event.rejected_at,
            error_code=event.error_code.value,
            stage=event.stage.value,
            detail=event.reason,
            model_name=name,
            model_version=version,
            requested_by=event.requested_by,
            role=role,
        )

    @classmethod
    def inferred(cls, result: InferenceCompleted) -> LifecycleEntry:
        """A model produced a result for the image."""
        return cls._of_result(result, LifecycleState.INFERRED, result.completed_at, Stage.INFERENCE)

    @classmethod
    def stored(cls, result: InferenceCompleted, at: datetime) -> LifecycleEntry:
        """The result was committed to ``inference_results``."""
        return cls._of_result(result, LifecycleState.STORED, at, Stage.RESULTS_SINK)

    @classmethod
    def _of_result(
        cls, result: InferenceCompleted, state: LifecycleState, at: datetime, stage: Stage
    ) -> LifecycleEntry:
        """A step of a model's result: the result names the image, the model and the requester."""
        return cls(
            event_id=result.event_id,
            state=state,
            at=at,
            stage=stage.value,
            model_name=result.model.name,
            model_version=result.model.version,
            requested_by=result.requested_by,
        )


class QuarantinedMessage(_Record):
    """A message on the audit topic the audit agent did not write, kept as evidence.

    ``payload`` is the message as found (it may hold anything the writer put in it: it is
    stored, never logged or returned by the API); ``reason`` is a fixed phrase.
    """

    audit_topic: str
    audit_partition: int
    audit_offset: int
    reason: str
    claimed_sequence: int | None
    payload: bytes


class AuditStoreReport(_Record):
    """What one audit-table transaction stored: new records and checkpoints, and quarantine."""

    stored: int = 0
    checkpoints: int = 0
    quarantined: tuple[QuarantinedMessage, ...] = ()
