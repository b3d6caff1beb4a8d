"""The validation stage: every arrival ends in exactly one of validated, rejected or dead letter.

* invalid event (poison): dead letter, the original bytes kept for replay;
* image not readable after the retries (still being written, storage hiccup): dead letter,
  so ``radstream dlq replay`` completes it once the file is there;
* anything wrong with the image or the clinical rules: ``images.rejected`` with a stable code;
* otherwise ``images.validated`` with the geometry and verdicts later stages need; with a
  :class:`~streams.stages.handoff.PixelHandoff` (inference runs in the same process), the
  validator's decoded pixels are put there for the inference stage before the event is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schemas.errors import RadstreamError
from schemas.events import ImageArrived, ImageValidated, Stage
from schemas.settings import ValidationSettings
from streams.kafka import Outgoing
from streams.pipeline import Incoming, dead_letter_for, parse_event
from streams.stages.common import (
    ImageReader,
    image_rejected,
    read_image_or_outcome,
    run_decoder,
)
from streams.stages.handoff import PixelHandoff
from streams.topics import validated_topic
from streams.validation import (
    ClinicalRules,
    ValidationAccepted,
    ValidationOutcome,
    validate_and_decode,
    validate_image,
)


def validated_event(event: ImageArrived, outcome: ValidationAccepted) -> ImageValidated:
    """The ``images.validated`` event of an accepted image: header facts win over the router's."""
    return ImageValidated(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        source=event.source,
        image_uri=event.image_uri,
        sha256=outcome.sha256,
        size_bytes=outcome.size_bytes,
        study_instance_uid=outcome.study_instance_uid or event.study_instance_uid,
        series_instance_uid=outcome.series_instance_uid or event.series_instance_uid,
        sop_instance_uid=outcome.sop_instance_uid or event.sop_instance_uid,
        modality=outcome.modality or event.modality,
        model_ids=event.model_ids,
        requested_by=event.requested_by,
        priority=event.priority,
        geometry=outcome.geometry,
        verdicts=outcome.verdicts,
    )


class ValidationStage:
    """Reads each arrival's image and validates it off the event loop."""

    stage = Stage.VALIDATION

    def __init__(
        self,
        reader: ImageReader,
        limits: ValidationSettings,
        rules: ClinicalRules,
        *,
        handoff: PixelHandoff | None = None,
    ) -> None:
        self._reader = reader
        self._limits = limits
        self._rules = rules
        # Only a store that keeps something is worth converting the decode into model pixels.
        self._handoff = handoff if handoff is not None and handoff.enabled else None
        self._validate: Callable[..., tuple[ValidationOutcome, NDArray[np.float32] | None]] = (
            _without_pixels if self._handoff is None else validate_and_decode
        )

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """One outcome per message, in order."""
        return [await self._one(message) for message in batch]

    async def _one(self, message: Incoming) -> Outgoing:
        try:
            event = parse_event(message, ImageArrived)
        except RadstreamError as exc:
            return dead_letter_for(message, self.stage, exc)
        data = await read_image_or_outcome(self._reader, message, self.stage, event)
        if isinstance(data, Outgoing):
            return data
        # Decoding is CPU-bound: off the loop, so heartbeats and other partitions keep going.
        outcome, pixels = await run_decoder(
            self._validate,
            data,
            limits=self._limits,
            rules=self._rules,
            declared_size=event.size_bytes,
            declared_sha256=event.sha256,
            model_ids=event.model_ids,
            event_modality=event.modality,
            declared_study_instance_uid=event.study_instance_uid,
        )
        if not isinstance(outcome, ValidationAccepted):
            return image_rejected(
                message,
                self.stage,
                event,
                outcome.error_code,
                outcome.reason,
                retryable=outcome.retryable,
            )
        validated = validated_event(event, outcome)
        if self._handoff is not None and pixels is not None:
            # Put before the event is sent: inference cannot see it earlier.
            self._handoff.put(validated.event_id, validated.sha256, pixels)
        return Outgoing(
            validated_topic(validated.priority),
            validated.message_key(),
            validated,
            message.out_headers(),
        )


def _without_pixels(
    data: bytes, **checks: Any
) -> tuple[ValidationOutcome, NDArray[np.float32] | None]:
    """:func:`validate_image` shaped like :func:`validate_and_decode` (no conversion cost)."""
    return validate_image(data, **checks), None
