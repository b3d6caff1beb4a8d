"""Builders of valid arrival, result, rejection and validation events for database tests and
benches."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from schemas.errors import ErrorCode
from schemas.events import (
    ImageArrived,
    ImageFormat,
    ImageGeometry,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ModelRef,
    Priority,
    Stage,
    ValidatorVerdict,
)

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def sha(text: str) -> str:
    """A deterministic SHA-256 hex digest."""
    return hashlib.sha256(text.encode()).hexdigest()


def make_result(
    *,
    user: str | None = "user-1",
    model: str = "chest-xray",
    version: str = "1.0.0",
    event_id: uuid.UUID | None = None,
    completed_at: datetime | None = None,
    study: str | None = "1.2.840.1",
    index: int = 0,
) -> InferenceCompleted:
    """One valid InferenceCompleted; ``index`` spreads completion times a second apart."""
    occurred = BASE_TIME + timedelta(seconds=index)
    return InferenceCompleted(
        event_id=event_id or uuid.uuid4(),
        correlation_id=f"c{index:031x}",  # canonical (schemas/correlation.py)
        occurred_at=occurred,
        completed_at=completed_at or occurred + timedelta(seconds=1),
        model=ModelRef(
            name=model,
            version=version,
            weights_sha256=sha(model + version),
            runtime="onnxruntime",
            provider="CPUExecutionProvider",
        ),
        input_sha256=sha(f"input-{index}"),
        verdicts=(ValidatorVerdict(check="size", passed=True),),
        thresholds={"pneumonia": 0.5},
        scores={"pneumonia": (index % 100) / 100},
        decision="positive" if index % 2 else "negative",
        inference_seconds=0.01,
        batch_size=4,
        requested_by=user,
        study_instance_uid=study,
        series_instance_uid="1.2.840.1.2",
        sop_instance_uid=f"1.2.840.1.2.{index}",
        modality="CR",
        source="router-a",
    )


def make_rejection(
    *,
    event_id: uuid.UUID | None = None,
    stage: Stage = Stage.VALIDATION,
    code: ErrorCode = ErrorCode.IMAGE_MALFORMED,
    model_id: str | None = None,
    reason: str = "image is truncated",
) -> ImageRejected:
    """One valid ImageRejected."""
    return ImageRejected(
        event_id=event_id or uuid.uuid4(),
        occurred_at=BASE_TIME,
        rejected_at=BASE_TIME + timedelta(seconds=2),
        stage=stage,
        error_code=code,
        reason=reason,
        model_id=model_id,
    )


def make_arrival(
    *, event_id: uuid.UUID | None = None, user: str | None = None, stat: bool = False
) -> ImageArrived:
    """One valid ImageArrived (on the stat lane with ``stat``)."""
    return ImageArrived(
        event_id=event_id or uuid.uuid4(),
        occurred_at=BASE_TIME,
        source="router-a",
        image_uri="file:///data/a.dcm",
        requested_by=user,
        priority=Priority.STAT if stat else Priority.ROUTINE,
    )


def make_validated(*, event_id: uuid.UUID | None = None) -> ImageValidated:
    """One valid ImageValidated."""
    return ImageValidated(
        event_id=event_id or uuid.uuid4(),
        occurred_at=BASE_TIME,
        validated_at=BASE_TIME + timedelta(milliseconds=500),
        source="router-a",
        image_uri="file:///data/a.dcm",
        sha256=sha("bytes"),
        size_bytes=1024,
        geometry=ImageGeometry(format=ImageFormat.DICOM, width=256, height=256, dtype="uint16"),
    )
