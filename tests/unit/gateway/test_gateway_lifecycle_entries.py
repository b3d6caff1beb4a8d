"""The API's view of stored lifecycle steps: the model id reads as the pipeline wrote it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from gateway.adapters import lifecycle_entry
from schemas.errors import ErrorCode
from schemas.events import ImageRejected, Stage
from sinks.records import LifecycleEntry as StoredLifecycleEntry

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def failed(model_id: str | None) -> StoredLifecycleEntry:
    """The stored step of an inference failure for ``model_id`` (as the results sink keeps it)."""
    rejection = ImageRejected(
        event_id=uuid.uuid4(),
        occurred_at=AT,
        rejected_at=AT,
        stage=Stage.INFERENCE,
        error_code=ErrorCode.MODEL_NOT_FOUND,
        reason="model is not registered",
        model_id=model_id,
    )
    return StoredLifecycleEntry.rejected(rejection)


class TestLifecycleEntryModel:
    @pytest.mark.parametrize(
        "model_id", ["lesion-detector@1.2.0", "nosuch-model", "lesion-detector@1.0.0+build.5"]
    )
    def test_the_model_id_round_trips(self, model_id: str) -> None:
        """name@version, or a bare name (an unknown model has no version): never "@None"."""
        assert lifecycle_entry(failed(model_id)).model == model_id

    def test_a_step_without_a_model_has_none(self) -> None:
        """A step no model took part in has no model (null in JSON, not a string)."""
        assert lifecycle_entry(failed(None)).model is None
