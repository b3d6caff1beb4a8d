"""The results sink stage: store results and lifecycle steps in PostgreSQL, exactly once.

Consumes ``inference.results``, ``images.validated``, ``images.rejected``, ``inference.shadow``
(outcomes of versions in shadow, stored with role ``shadow``) and the arrival topics
``images.arrived`` and ``images.arrived.stat`` (the lifecycle's ``arrived`` step). The stage is the
runtime of a :class:`~streams.batching_sink.BatchingSink` (``sinks.results_sink``): it adds the
batch's events and flushes them in one transaction, waiting out database outages
(:func:`~streams.batching_sink.flush_until_committed`); until that returns, the batch is not
acknowledged, so the stage stops consuming (backpressure) and resumes where it stopped.
Redelivered events are absorbed by the database's natural keys.

A malformed arrival is not dead-lettered here: the validation stage reads the same message and
dead-letters it (once, with its code); a second dead letter from this stage would make an
operator replay it twice. The results stage skips it, logs its code and position (never its
value) and counts it (``on_arrival_skipped``, ``radstream_results_arrivals_skipped_total``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog

from schemas.errors import ErrorCode
from schemas.events import (
    ImageArrived,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ShadowOutcome,
    Stage,
    StorableEvent,
)
from streams.batching_sink import BatchingSink, flush_until_committed
from streams.kafka import Outgoing
from streams.pipeline import Incoming, apply_isolating_culprits, parse_batch, skip_reporter
from streams.topics import TopicKey, TopicNames

log = structlog.get_logger("radstream.results")

# Messages that only add a lifecycle step (no result, no rejection): nobody waits for them, so
# the agent may hold them back for the image's outcome and write both in one transaction.
LIFECYCLE_ONLY_TOPICS: tuple[TopicKey, ...] = (
    TopicKey.IMAGES_ARRIVED,
    TopicKey.IMAGES_ARRIVED_STAT,
    TopicKey.IMAGES_VALIDATED,
    TopicKey.IMAGES_VALIDATED_STAT,
)


class ResultsStage:
    """Parses the batch, writes it, and dead-letters only what cannot be stored."""

    stage = Stage.RESULTS_SINK

    def __init__(
        self,
        sink: BatchingSink[StorableEvent, Any],
        topics: TopicNames,
        *,
        on_stored: Callable[[InferenceCompleted], None] | None = None,
        on_write_error: Callable[[BaseException], None] | None = None,
        on_arrival_skipped: Callable[[ErrorCode], None] | None = None,
    ) -> None:
        self._sink = sink
        self._models: dict[str, type[StorableEvent]] = {
            topics[TopicKey.INFERENCE_RESULTS]: InferenceCompleted,
            topics[TopicKey.IMAGES_REJECTED]: ImageRejected,
            topics[TopicKey.IMAGES_VALIDATED]: ImageValidated,
            topics[TopicKey.INFERENCE_SHADOW]: ShadowOutcome,
            topics[TopicKey.IMAGES_VALIDATED_STAT]: ImageValidated,
            topics[TopicKey.IMAGES_ARRIVED]: ImageArrived,
            topics[TopicKey.IMAGES_ARRIVED_STAT]: ImageArrived,
        }
        # Validation dead-letters a malformed arrival; this stage only skips it (module doc).
        self._arrivals = topics.arrival_lanes
        self._skip_arrival = skip_reporter(log, "results_arrival_skipped", on_arrival_skipped)
        self._on_stored = on_stored
        self._on_write_error = on_write_error

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """Store the batch; return dead letters for unparseable or unstorable messages."""
        parsed, out = parse_batch(
            batch,
            self._models,
            self.stage,
            skipped_topics=self._arrivals,
            on_skipped=self._skip_arrival,
        )
        out += await apply_isolating_culprits(
            parsed, self._write, self.stage, on_batch_error=self._on_write_error
        )
        return out

    async def _write(self, events: Sequence[StorableEvent]) -> None:
        self._sink.clear()
        for event in events:
            self._sink.add(event)
        try:
            await flush_until_committed(self._sink)
        finally:
            self._sink.clear()
        if self._on_stored is not None:
            for event in events:
                if isinstance(event, InferenceCompleted):
                    self._on_stored(event)
