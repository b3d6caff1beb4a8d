"""The results sink stage: store results and lifecycle steps in PostgreSQL, exactly once.

Consumes ``inference.results``, ``images.validated``, ``images.rejected`` and
``inference.shadow`` (outcomes of versions in shadow, stored with role ``shadow``). The stage is the
runtime of a :class:`~streams.batching_sink.BatchingSink` (``sinks.results_sink``): it adds the
batch's events and flushes them in one transaction, waiting out database outages
(:func:`~streams.batching_sink.flush_until_committed`); until that returns, the batch is not
acknowledged, so the stage stops consuming (backpressure) and resumes where it stopped.
Redelivered events are absorbed by the database's natural keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from schemas.errors import RadstreamError
from schemas.events import (
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ShadowOutcome,
    Stage,
    StorableEvent,
)
from streams.batching_sink import BatchingSink, flush_until_committed
from streams.kafka import Outgoing
from streams.pipeline import Incoming, dead_letter_for, parse_event
from streams.topics import TopicKey, TopicNames


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
    ) -> None:
        self._sink = sink
        self._models: dict[str, type[StorableEvent]] = {
            topics[TopicKey.INFERENCE_RESULTS]: InferenceCompleted,
            topics[TopicKey.IMAGES_REJECTED]: ImageRejected,
            topics[TopicKey.IMAGES_VALIDATED]: ImageValidated,
            topics[TopicKey.INFERENCE_SHADOW]: ShadowOutcome,
            topics[TopicKey.IMAGES_VALIDATED_STAT]: ImageValidated,
        }
        self._on_stored = on_stored
        self._on_write_error = on_write_error

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """Store the batch; return dead letters for unparseable or unstorable messages."""
        parsed: list[tuple[Incoming, StorableEvent]] = []
        out: list[Outgoing] = []
        for message in batch:
            model = self._models.get(message.topic)
            if model is None:
                wrong = ValueError(f"results stage does not consume {message.topic}")
                out.append(dead_letter_for(message, self.stage, wrong))
                continue
            try:
                parsed.append((message, parse_event(message, model)))
            except RadstreamError as exc:
                out.append(dead_letter_for(message, self.stage, exc))
        try:
            await self._write([event for _, event in parsed])
        except Exception as exc:  # noqa: BLE001 - isolate the culprit instead of losing the batch
            if self._on_write_error is not None:
                self._on_write_error(exc)
            # One bad row must not take its batch-mates with it: write them one by one.
            for message, event in parsed:
                try:
                    await self._write([event])
                except Exception as single:  # noqa: BLE001 - dead-lettered with its code
                    out.append(dead_letter_for(message, self.stage, single))
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
