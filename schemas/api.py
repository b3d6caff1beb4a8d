"""Bodies of the HTTP API: what clients send and what the gateway answers.

Request models forbid unknown fields, like the event contracts, so a client cannot smuggle patient
attributes through the API. Response models are read models: the gateway's ports return them and
the composition root adapts the repositories' rows to them. None of them has a field for a patient
name, ID or birth date.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from schemas.correlation import MAX_CORRELATION_ID_LENGTH
from schemas.errors import ErrorCode
from schemas.events import (
    ModelId,
    ModelRef,
    Priority,
    Pseudonym,
    Sha256Hex,
    Stage,
    Uid,
    ValidatorVerdict,
)
from schemas.modality import defined_modality
from schemas.rollout import RolloutMode

# What a person types is refused when it is not a defined term (schemas/modality.py).
Modality = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$"), AfterValidator(defined_modality)]
# A model name as the catalogue lists it (the part of a ModelId before "@").
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
# Opaque paging cursor produced by the results repository.
Cursor = Annotated[str, Field(pattern=r"^[A-Za-z0-9_=.-]{1,512}$")]


def utc_timestamp(value: datetime) -> datetime:
    """The same instant in UTC; one that falls outside the years 1-9999 in UTC is refused.

    ``9999-12-31T23:59:59-23:59`` is a valid ISO 8601 string whose instant Python (and asyncpg,
    which converts to UTC) cannot represent: normalising here turns it into a 400, not a 500.

    Raises:
        ValueError: the instant is out of range.
    """
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range (years 1 to 9999 in UTC)") from exc


# A time filter from a client: timezone-aware, normalised to UTC, range-checked.
UtcTimestamp = Annotated[AwareDatetime, AfterValidator(utc_timestamp)]
SpecValue = str | int | float | bool | None | list[str] | list[int] | list[float]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ErrorBody(_Response):
    """The one error shape of the API: a stable code, a safe message and the correlation id."""

    code: ErrorCode
    message: str = Field(max_length=500, description="patient-data-free explanation")
    correlation_id: str = Field(max_length=MAX_CORRELATION_ID_LENGTH)


class ImageReference(_Request):
    """Submit an image a router already stored: the arrival contract's client-side fields.

    ``event_id``, ``occurred_at`` and ``requested_by`` are set by the gateway (the requester is
    the token's subject, never a body field).
    """

    source: Pseudonym = Field(description="router name or DICOM AE title")
    image_uri: str = Field(
        min_length=8, max_length=4096, description="file:// URI inside a storage root"
    )
    content_type: str | None = Field(None, max_length=100)
    size_bytes: int | None = Field(None, ge=0)
    sha256: Sha256Hex | None = None
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    modality: Modality | None = None
    model_ids: tuple[ModelId, ...] = Field(default=(), max_length=8)
    priority: Priority = Priority.ROUTINE


class UploadFields(_Request):
    """The form fields accepted next to an uploaded ``file`` part."""

    source: Pseudonym = "api-upload"
    content_type: str | None = Field(None, max_length=100)
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    modality: Modality | None = None
    model_ids: tuple[ModelId, ...] = Field(default=(), max_length=8)
    priority: Priority = Priority.ROUTINE


class SubmissionAccepted(_Response):
    """A submission was published; follow ``status_url`` for its lifecycle."""

    event_id: uuid.UUID
    status_url: str


class BatchSubmission(_Request):
    """Several image references in one request (at most ``api.max_batch_items``)."""

    items: tuple[ImageReference, ...] = Field(min_length=1, max_length=1000)


class BatchItemOutcome(_Response):
    """What happened to one item of a batch, by its index in the request."""

    index: int = Field(ge=0)
    status: Literal["accepted", "rejected"]
    event_id: uuid.UUID | None = None
    status_url: str | None = None
    code: ErrorCode | None = None
    message: str | None = Field(None, max_length=500)


class BatchAccepted(_Response):
    """Per-item outcomes of a batch submission."""

    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    items: tuple[BatchItemOutcome, ...]


class ModelStatus(_Response):
    """One model of the registry as the API lists it."""

    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    runtime: str = Field(max_length=32)
    digest: Sha256Hex = Field(description="SHA-256 of the weights")
    status: Literal["ready", "unavailable", "disabled"]
    default: bool = False
    rollout: RolloutMode = Field(
        RolloutMode.STAGED, description="active, canary, shadow, staged or retired"
    )
    canary_percent: int | None = Field(
        None, ge=1, le=99, description="a canary's share of studies, in percent"
    )
    input_spec: dict[str, SpecValue] = Field(default_factory=dict)


class ModelList(_Response):
    """The model registry."""

    models: tuple[ModelStatus, ...]


class VerificationStatus(StrEnum):
    """Whether a clinician has verified a result."""

    VERIFIED = "verified"
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class ResultQuery:
    """Which stored results a listing returns, and which page of them.

    The one bundle of result filters: the API builds it from the query string, and the
    gateway's port, the repository and the test fakes take it. Every given filter must hold;
    ``since`` is inclusive and ``until`` exclusive on the completion time (both
    timezone-aware); ``cursor`` continues a listing where its previous page ended.
    """

    limit: int = 50
    cursor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    status: VerificationStatus | None = None
    study_uid: str | None = None


@dataclass(frozen=True, slots=True)
class ComparisonQuery:
    """Which two versions of a model to compare, over which window of stored results.

    The API builds it from the query string; the gateway's port, its adapter and the test fakes
    take it. A missing ``candidate`` means the canary, else the one version in shadow; a missing
    ``baseline`` the active version. ``[since, until)``, both timezone-aware.
    """

    name: str
    since: datetime
    until: datetime
    candidate: str | None = None
    baseline: str | None = None


class ResultView(_Response):
    """One inference result with its provenance and verification state."""

    result_id: uuid.UUID
    event_id: uuid.UUID
    model: ModelRef
    input_sha256: Sha256Hex
    decision: str = Field(max_length=64)
    scores: dict[str, float]
    thresholds: dict[str, float]
    verdicts: tuple[ValidatorVerdict, ...] = ()
    occurred_at: AwareDatetime
    completed_at: AwareDatetime
    requested_by: Pseudonym | None = None
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    modality: str | None = None
    status: VerificationStatus = VerificationStatus.UNVERIFIED
    verified_by: Pseudonym | None = None
    verified_at: AwareDatetime | None = None
    verification_note: str | None = Field(None, max_length=2000)


class ResultPage(_Response):
    """One page of results; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: tuple[ResultView, ...]
    next_cursor: Cursor | None = None


class Verification(_Request):
    """A clinician's verification of a result, with a note."""

    note: str = Field(min_length=1, max_length=2000)


class LifecycleState(StrEnum):
    """Where a submitted image got to in the pipeline."""

    ARRIVED = "arrived"
    VALIDATED = "validated"
    REJECTED = "rejected"
    INFERRED = "inferred"
    STORED = "stored"
    DEAD_LETTERED = "dead_lettered"


class LifecycleEntry(_Response):
    """One step of a submitted image's way through the pipeline."""

    state: LifecycleState
    stage: Stage | None = None
    error_code: ErrorCode | None = None
    at: datetime
    model: str | None = Field(
        None,
        max_length=100,
        description="the model the step concerns: name@version, or the name alone when "
        "no version was resolved (e.g. a model that is not registered)",
    )


class EventLifecycle(_Response):
    """The lifecycle of one submitted image, oldest step first."""

    event_id: uuid.UUID
    entries: tuple[LifecycleEntry, ...]


class Health(_Response):
    """Liveness: the process answers."""

    status: Literal["ok"] = "ok"


class Readiness(_Response):
    """Readiness: every dependency check and the overall verdict."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
