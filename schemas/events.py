"""Event contracts: the value of every message on radstream's pipeline topics.

:class:`ImageArrived` is the public contract PACS/DICOM routers integrate against. Events are
facts in the past tense. Every model forbids unknown fields, so a router cannot smuggle patient
attributes (``patient_name`` …) into the pipeline: such a message is rejected as
``EVENT_MALFORMED`` and dead-lettered. No event has a field for a patient name, ID or birth date.

Evolution rule (checked by ``tests/unit/schemas/test_contracts.py`` against the committed JSON
Schemas in ``schemas/jsonschema/``): new fields must be optional; removing or retyping a field
needs a new ``schema_version``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# The header's name belongs to the correlation-id owner; re-exported here for the modules being
# rewritten in parallel (the Kafka layer, the CLI) until they import it from there.
from schemas.body_part import recognised_body_part
from schemas.correlation import (
    MAX_CORRELATION_ID_LENGTH,
    CorrelationId,
    accept_correlation_id,
    derived_correlation_id,
)
from schemas.errors import ErrorCode
from schemas.modality import recognised_modality

SCHEMA_VERSION: Final = 1

# DICOM UIDs: dot-separated numeric components, at most 64 characters (PS3.5 9.1).
Uid = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# A modality a sender gave: a value that is not a DICOM defined term is read as no modality, so
# free text in the field (a name, say) is never routed by, logged or passed on
# (schemas/modality.py).
SenderModality = Annotated[str | None, AfterValidator(recognised_modality)]
# A body part examined a sender gave: likewise read as none unless it is a DICOM defined term
# (normalised to upper case), so a name typed into BodyPartExamined goes nowhere
# (schemas/body_part.py).
SenderBodyPart = Annotated[str | None, AfterValidator(recognised_body_part)]
# Pseudonymous identifiers (user ids, router names): short, no spaces, no free text.
Pseudonym = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@:-]{1,64}$")]
ModelId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}(@[0-9A-Za-z.+-]{1,32})?$")]


def join_model_id(name: str, version: str | None) -> str:
    """The :data:`ModelId` of ``name`` and ``version``: ``name@version``, or the bare name.

    A step can name a model without a version (an id that never resolved, such as a model
    that is not registered); it reads as the id it was asked for, never ``name@None``.
    """
    return f"{name}@{version}" if version else name


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Stage(StrEnum):
    """Pipeline stages, as named in rejections, dead letters, logs and metrics."""

    INGEST = "ingest"
    VALIDATION = "validation"
    INFERENCE = "inference"
    RESULTS_SINK = "results_sink"
    AUDIT = "audit"
    API = "api"
    DICOM_EXPORT = "dicom_export"
    STUDIES = "studies"


class Priority(StrEnum):
    """Clinical urgency requested by the router."""

    ROUTINE = "routine"
    URGENT = "urgent"
    STAT = "stat"


class ImageFormat(StrEnum):
    """Image container formats radstream accepts (detected from the bytes)."""

    DICOM = "dicom"
    PNG = "png"
    JPEG = "jpeg"


class Event(BaseModel):
    """Common configuration of every event model."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_in_utc(cls, value: object) -> object:
        """Store every timestamp in UTC so ordering and hashing never depend on the sender."""
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return value


# Namespace of event ids derived from message content (uuid5); fixed forever.
EVENT_ID_NAMESPACE: Final = uuid.UUID("6f1d0c4e-2b7a-5c1e-9a53-7d0f3b2e8c41")


def derived_event_id(message: dict[str, Any]) -> uuid.UUID:
    """The event id of an arrival sent without one: UUIDv5 of its canonical JSON.

    Canonical: keys sorted, no whitespace, so the same content gives the same id however the
    router ordered or spaced it (a redelivery, a replay and the audit agent all agree).
    """
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return uuid.uuid5(EVENT_ID_NAMESPACE, canonical)


def study_key(study_instance_uid: str | None, event_id: uuid.UUID) -> bytes:
    """The Kafka key of every event about one image: its StudyInstanceUID, else its event id.

    Stages derive the key from the validated event they publish, never copy the consumed
    message's key: a router may key ``images.arrived`` with anything (a patient's name, a
    record number), and a copied key would carry it onto every downstream topic. Keying by
    study keeps one study's events on one partition, in order.
    """
    return (study_instance_uid or str(event_id)).encode()


class _AboutOneImage(Protocol):
    @property
    def event_id(self) -> uuid.UUID: ...  # pragma: no cover - a type, never called

    @property
    def study_instance_uid(self) -> str | None: ...  # pragma: no cover - a type, never called


class StudyKeyed:
    """Mixin for the events about one image: their Kafka key is :func:`study_key`.

    No annotations here: pydantic would take them for fields and reorder the contracts.
    """

    def message_key(self: _AboutOneImage) -> bytes:
        """The Kafka key: StudyInstanceUID when known, else the event id."""
        return study_key(self.study_instance_uid, self.event_id)


class ImageArrived(StudyKeyed, Event):
    """A router stored an image and asks radstream to process it (topic ``images.arrived``).

    The message key is the StudyInstanceUID when present (so a study stays in one partition),
    else the event id; the ``correlation_id`` header travels with it.

    A router should send ``event_id``. When a message has none, it is derived from the message
    itself (:func:`derived_event_id`), so every stage, the audit trail and a dead-letter replay
    of the same message agree on it; objects built in Python get a fresh random id.
    """

    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="set by the router; derived from the message's content when absent",
    )
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    source: Pseudonym = Field(description="router name or DICOM AE title")
    image_uri: str = Field(min_length=8, max_length=4096, description="file:// URI")
    content_type: str | None = Field(None, max_length=100)
    size_bytes: int | None = Field(None, ge=0)
    sha256: Sha256Hex | None = None
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    modality: SenderModality = Field(None, pattern=r"^[A-Z0-9]{1,16}$")
    model_ids: tuple[ModelId, ...] = Field(default=(), max_length=8)
    requested_by: Pseudonym | None = Field(None, description="pseudonymous user id")
    priority: Priority = Priority.ROUTINE
    expected_series_instances: int | None = Field(
        None, ge=1, le=100_000, description="instances the sender will send of this series"
    )
    expected_study_instances: int | None = Field(
        None, ge=1, le=100_000, description="instances the sender will send of this study"
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_missing_event_id(cls, data: Any, info: ValidationInfo) -> Any:
        """A parsed message without ``event_id`` gets the one its content determines."""
        if info.mode == "json" and isinstance(data, dict) and "event_id" not in data:
            return {**data, "event_id": derived_event_id(data)}
        return data


class ImageGeometry(BaseModel):
    """What the validator decoded about the pixels, for later stages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: ImageFormat
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    frames: int = Field(1, ge=1)
    samples_per_pixel: int = Field(1, ge=1, le=4)
    dtype: str = Field(pattern=r"^(u?int(8|16|32)|float(32|64)|bool)$")
    bits_allocated: int | None = None
    bits_stored: int | None = None
    photometric_interpretation: str | None = Field(None, max_length=32)
    transfer_syntax_uid: Uid | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    body_part: SenderBodyPart = Field(None, max_length=32)
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window_center: float | None = None
    window_width: float | None = None


class ValidatorVerdict(BaseModel):
    """The outcome of one named check; ``detail`` is free of patient data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    check: str = Field(max_length=64)
    passed: bool
    detail: str = Field("", max_length=256)


class ImageValidated(StudyKeyed, Event):
    """An image passed validation (topic ``images.validated``)."""

    event_id: uuid.UUID
    occurred_at: AwareDatetime
    validated_at: AwareDatetime = Field(default_factory=utc_now)
    source: Pseudonym
    image_uri: str
    sha256: Sha256Hex
    size_bytes: int = Field(ge=0)
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    modality: SenderModality = None
    model_ids: tuple[ModelId, ...] = ()
    requested_by: Pseudonym | None = None
    priority: Priority = Priority.ROUTINE
    geometry: ImageGeometry
    verdicts: tuple[ValidatorVerdict, ...] = ()


class ImageRejected(StudyKeyed, Event):
    """An image could not be processed by a stage (topic ``images.rejected``)."""

    event_id: uuid.UUID
    occurred_at: AwareDatetime
    rejected_at: AwareDatetime = Field(default_factory=utc_now)
    stage: Stage
    error_code: ErrorCode
    reason: str = Field(max_length=500, description="short, without patient data")
    retryable: bool = False
    source: Pseudonym | None = None
    requested_by: Pseudonym | None = None
    study_instance_uid: Uid | None = None
    model_id: ModelId | None = None


class ModelRef(BaseModel):
    """Which exact model produced a result."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str = Field(max_length=64)
    version: str = Field(max_length=32)
    weights_sha256: Sha256Hex
    runtime: str = Field(max_length=32)
    provider: str = Field(max_length=64)


class InferenceCompleted(StudyKeyed, Event):
    """A model produced a result for an image (topic ``inference.results``).

    Carries full provenance: which model and weights, which input bytes, which checks passed,
    which thresholds turned scores into the decision.
    """

    model_config = ConfigDict(protected_namespaces=())

    result_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_id: uuid.UUID
    correlation_id: str = Field(max_length=MAX_CORRELATION_ID_LENGTH)
    occurred_at: AwareDatetime
    completed_at: AwareDatetime = Field(default_factory=utc_now)
    model: ModelRef
    input_sha256: Sha256Hex
    verdicts: tuple[ValidatorVerdict, ...] = ()
    thresholds: dict[str, float]
    scores: dict[str, float]
    decision: str = Field(max_length=64)
    inference_seconds: float = Field(ge=0)
    batch_size: int = Field(1, ge=1)
    requested_by: Pseudonym | None = None
    study_instance_uid: Uid | None = None
    series_instance_uid: Uid | None = None
    sop_instance_uid: Uid | None = None
    modality: SenderModality = None
    source: Pseudonym | None = None
    image_uri: str | None = Field(
        None,
        max_length=4096,
        description="the input's file:// URI (the dicom-export stage reads the source header "
        "from it when the image was published by path rather than received over DICOM)",
    )

    def effective_correlation_id(self) -> CorrelationId:
        """``correlation_id`` when the rule accepts it, else an id derived from the result id.

        The inference stage only ever writes accepted ids; this guards what the results table and
        the audit trail keep against results written before the rule or by anyone else.
        """
        return accept_correlation_id(self.correlation_id) or derived_correlation_id(
            "result", self.result_id
        )


class ResultExported(StudyKeyed, Event):
    """A result went back to a DICOM destination as a Structured Report (``results.exported``).

    One event per result and destination, published only after the destination answered the
    C-STORE with success. Carries UIDs and ids only: the report's patient and study attributes
    were read from the stored source instance and never leave the DICOM association.
    """

    model_config = ConfigDict(protected_namespaces=())

    event_id: uuid.UUID = Field(description="the arrival event of the source image")
    result_id: uuid.UUID
    correlation_id: str = Field(max_length=MAX_CORRELATION_ID_LENGTH)
    occurred_at: AwareDatetime = Field(description="when the source image arrived")
    exported_at: AwareDatetime = Field(default_factory=utc_now)
    destination: Pseudonym = Field(description="the destination's AE title")
    study_instance_uid: Uid
    source_sop_instance_uid: Uid
    report_series_instance_uid: Uid
    report_sop_instance_uid: Uid
    report_sop_class_uid: Uid
    model: ModelRef


class DeadLetterHeader(BaseModel):
    """One Kafka header of the original message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    value_b64: str


class DeadLetter(Event):
    """A message a stage could not process, kept whole for inspection and replay.

    The original value is kept as base64 bytes: it is never logged, and the ``dlq show``
    command prints it only through the PHI masker.
    """

    dead_letter_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    stage: Stage
    error_code: ErrorCode
    reason: str = Field(max_length=500)
    attempts: int = Field(ge=1)
    first_failure_at: AwareDatetime
    last_failure_at: AwareDatetime
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    key_b64: str | None = None
    value_b64: str
    headers: tuple[DeadLetterHeader, ...] = ()
    correlation_id: str | None = Field(None, max_length=MAX_CORRELATION_ID_LENGTH)
    event_id: uuid.UUID | None = None

    def effective_correlation_id(self) -> CorrelationId:
        """``correlation_id`` when the rule accepts it, else an id derived from the letter's id.

        Stages only ever write accepted ids; for a dead letter written before the rule (or by
        anyone else) its replay, its audit record and the audit of what was done with it still
        share one id, and the refused original is never copied on.
        """
        return accept_correlation_id(self.correlation_id) or derived_correlation_id(
            "dead-letter", self.dead_letter_id
        )

    def message_key(self) -> bytes:
        """The Kafka key: the event id when known, else the letter's id (never the original key,
        which a sender chose; the original is kept in ``key_b64`` for replay)."""
        return str(self.event_id or self.dead_letter_id).encode()


class ShadowOutcome(Event):
    """What a model version running in shadow did with an image (topic ``inference.shadow``).

    A shadow version (or the active version beside a canary) runs on live traffic so it can be
    compared with the published one; its outcome is stored for that comparison and never
    reaches ``inference.results``, ``images.rejected``, downstream consumers or the API's
    default views. Exactly one of ``result`` (it scored the image) and ``rejection`` (it
    refused or failed the image, with the code) is set.
    """

    result: InferenceCompleted | None = None
    rejection: ImageRejected | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ShadowOutcome:
        if (self.result is None) == (self.rejection is None):
            raise ValueError("a shadow outcome has exactly one of result and rejection")
        return self


StorableEvent = InferenceCompleted | ImageRejected | ImageValidated | ImageArrived | ShadowOutcome
"""The events the results sink stores: results, and the lifecycle steps consumed beside them."""
