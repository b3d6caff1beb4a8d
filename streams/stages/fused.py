"""Validation and inference as one step, for a worker that runs both stages (issue 18).

At normal load every hop costs a consumption, a batch, a delivery and a wait for the other
stage's turn on the event loop; the validated→inferred hop was the longest of the pipeline's
tail. So a worker running both stages infers each image it accepts in the batch that
validated it: :class:`ValidateThenInfer` runs the validation stage, hands its accepted
images (and their decoded pixels, :mod:`streams.stages.handoff`) to the inference stage at
once, and delivers both stages' outcomes together, before the arrivals are acknowledged.

``images.validated`` is still published, for the results sink, studies, the audit trail and
any other subscriber, with the header ``radstream-inferred: 1``: its image has been inferred
already. Inference consumers skip such events (:func:`already_inferred`), so a separately
deployed inference stage does not infer them again, while an unmarked event — from a
validation-only worker, or published before a worker was upgraded — is still inferred. The
worker's own inference agents keep consuming ``images.validated`` for exactly those.

An inference failure that becomes a dead letter keeps the *arrival* (the message this step
consumed): replaying it validates and infers the image again. A crash between the delivery of
the validated event and of the result redelivers the arrival, and both are produced again (at
least once, as for every stage); the first, marked validated event is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from schemas.events import ImageValidated, Stage
from streams.kafka import Outgoing
from streams.pipeline import Incoming
from streams.stages.inference import InferenceStage
from streams.stages.validation import ValidationStage

INFERRED_HEADER: Final = "radstream-inferred"
_INFERRED: Final = (INFERRED_HEADER, b"1")


def already_inferred(message: Incoming) -> bool:
    """Whether a validated event's image was inferred in the step that validated it."""
    return message.header(INFERRED_HEADER) == "1"


class ValidateThenInfer:
    """The validation stage, then the inference stage on what it accepted, as one handler.

    Args:
        in_flight: told when images enter (positive) and leave (negative) inference
            (:meth:`streams.pipeline.StageObserver.in_flight`): the agent counts the batch in
            flight under validation only, so without it inference's in-flight gauge would
            stay 0 in a combined worker.
    """

    def __init__(
        self,
        validation: ValidationStage,
        inference: InferenceStage,
        *,
        in_flight: Callable[[Stage, int], None] | None = None,
    ) -> None:
        self.stage = validation.stage
        self._validation = validation
        self._inference = inference
        self._in_flight = in_flight

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """Validation's outcomes (accepted images marked as inferred), then inference's."""
        validated = await self._validation.handle(batch)
        # One outcome per arrival, in order (ValidationStage.handle).
        accepted: list[tuple[Incoming, ImageValidated]] = []
        outcomes: list[Outgoing] = []
        for arrival, outcome in zip(batch, validated, strict=True):
            if isinstance(outcome.value, ImageValidated):
                accepted.append((arrival, outcome.value))
                outcomes.append(replace(outcome, headers=(*outcome.headers, _INFERRED)))
            else:
                outcomes.append(outcome)
        if not accepted or self._in_flight is None:
            return outcomes + await self._inference.infer(accepted)
        self._in_flight(self._inference.stage, len(accepted))
        try:
            return outcomes + await self._inference.infer(accepted)
        finally:
            # Also on cancellation or a crash: a step that ended has nothing in flight.
            self._in_flight(self._inference.stage, -len(accepted))
