"""Builders of pipeline events, API actions and audit chains for the audit tests."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import (
    ApiAction,
    ApiActionKind,
    AuditCheckpoint,
    AuditDraft,
    AuditRecord,
    AuditSource,
)
from schemas.errors import ErrorCode
from schemas.events import (
    DeadLetter,
    ImageArrived,
    ImageFormat,
    ImageGeometry,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ModelRef,
    ResultExported,
    Stage,
)
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import sign_checkpoint
from streams.audit.records import draft_for_event

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STUDY = "1.2.840.113619.2.55.3.1"
SERIES = "1.2.840.113619.2.55.3.1.2"
SOP = "1.2.840.113619.2.55.3.1.2.3"
SHA = "a" * 64
# Canonical correlation ids (schemas/correlation.py) of the result, dead letter and API action.
RESULT_CORRELATION = "c1" * 16
DEAD_LETTER_CORRELATION = "c2" * 16
API_CORRELATION = "c3" * 16
EXPORT_CORRELATION = "c4" * 16


def arrived(**overrides: object) -> ImageArrived:
    """An arrival event with UIDs and a requester."""
    fields: dict[str, object] = {
        "occurred_at": T0,
        "source": "router-1",
        "image_uri": "file:///data/img.dcm",
        "study_instance_uid": STUDY,
        "series_instance_uid": SERIES,
        "sop_instance_uid": SOP,
        "requested_by": "dr.who",
    }
    fields.update(overrides)
    return ImageArrived.model_validate(fields)


def validated(event_id: uuid.UUID) -> ImageValidated:
    """A validation event for ``event_id``."""
    return ImageValidated(
        event_id=event_id,
        occurred_at=T0,
        validated_at=T0 + timedelta(seconds=1),
        source="router-1",
        image_uri="file:///data/img.dcm",
        sha256=SHA,
        size_bytes=10,
        study_instance_uid=STUDY,
        sop_instance_uid=SOP,
        geometry=ImageGeometry(format=ImageFormat.DICOM, width=64, height=64, dtype="uint16"),
    )


def rejected(
    event_id: uuid.UUID,
    *,
    retryable: bool = False,
    reason: str = "bad",
    stage: Stage = Stage.VALIDATION,
) -> ImageRejected:
    """A rejection of ``event_id`` by ``stage`` with free-text ``reason``."""
    return ImageRejected(
        event_id=event_id,
        occurred_at=T0,
        rejected_at=T0 + timedelta(seconds=2),
        stage=stage,
        error_code=ErrorCode.IMAGE_MALFORMED,
        reason=reason,
        retryable=retryable,
        study_instance_uid=STUDY,
        model_id="chest-xray@1.0.0",
    )


def completed(event_id: uuid.UUID) -> InferenceCompleted:
    """An inference result for ``event_id``."""
    return InferenceCompleted(
        event_id=event_id,
        correlation_id=RESULT_CORRELATION,
        occurred_at=T0,
        completed_at=T0 + timedelta(seconds=3),
        model=ModelRef(
            name="chest-xray", version="1.0.0", weights_sha256=SHA, runtime="onnx", provider="cpu"
        ),
        input_sha256=SHA,
        thresholds={"abnormal": 0.5},
        scores={"abnormal": 0.7},
        decision="abnormal",
        inference_seconds=0.01,
        sop_instance_uid=SOP,
    )


def exported(event_id: uuid.UUID, *, destination: str = "PACS") -> ResultExported:
    """A result report delivered to ``destination`` for ``event_id``."""
    return ResultExported(
        event_id=event_id,
        result_id=uuid.UUID(int=99),
        correlation_id=EXPORT_CORRELATION,
        occurred_at=T0,
        exported_at=T0 + timedelta(seconds=5),
        destination=destination,
        study_instance_uid=STUDY,
        source_sop_instance_uid=SOP,
        report_series_instance_uid="2.25.1",
        report_sop_instance_uid="2.25.2",
        report_sop_class_uid="1.2.840.10008.5.1.4.1.1.88.33",
        model=ModelRef(
            name="chest-xray", version="1.0.0", weights_sha256=SHA, runtime="onnx", provider="cpu"
        ),
    )


def dead_letter(event_id: uuid.UUID | None, *, reason: str = "boom") -> DeadLetter:
    """A dead letter with a payload and free-text reason."""
    return DeadLetter(
        stage=Stage.INFERENCE,
        error_code=ErrorCode.INFERENCE_FAILED,
        reason=reason,
        attempts=3,
        first_failure_at=T0,
        last_failure_at=T0 + timedelta(seconds=4),
        source_topic="radstream.images.validated",
        source_partition=0,
        source_offset=7,
        value_b64=base64.b64encode(b'{"patient":"x"}').decode(),
        correlation_id=DEAD_LETTER_CORRELATION,
        event_id=event_id,
    )


def api_action(kind: ApiActionKind = ApiActionKind.READ, **overrides: object) -> ApiAction:
    """An API action by a clinician."""
    fields: dict[str, object] = {
        "action": kind,
        "occurred_at": T0,
        "actor_id": "dr.who",
        "roles": ("clinician",),
        "outcome": "success",
        "http_status": 200,
        "route": "/v1/results/{result_id}",
        "result_id": uuid.uuid4(),
        "correlation_id": API_CORRELATION,
        "network_address": "10.0.0.1",
    }
    fields.update(overrides)
    return ApiAction.model_validate(fields)


def source(offset: int = 0, topic: str = "radstream.images.arrived") -> AuditSource:
    """Source coordinates."""
    return AuditSource(topic=topic, partition=0, offset=offset)


def drafts(count: int) -> list[AuditDraft]:
    """``count`` distinct drafts (arrivals at increasing offsets)."""
    return [draft_for_event(arrived(), source(i)) for i in range(count)]


def build_chain(
    count: int, key: Ed25519PrivateKey, *, every: int = 5, chain_partition: int = 0
) -> tuple[list[AuditRecord], list[AuditCheckpoint]]:
    """A chain of ``count`` records and a checkpoint after every ``every`` records."""
    state = ChainState.genesis(chain_partition)
    records: list[AuditRecord] = []
    checkpoints: list[AuditCheckpoint] = []
    for draft in drafts(count):
        record, state = append(state, draft)
        records.append(record)
        if (record.sequence + 1) % every == 0:
            checkpoints.append(sign_checkpoint(key, state, T0))
    return records, checkpoints
