"""The inference stage: micro-batched ONNX inference with per-image failure isolation.

Per batch: take each validated image's pixels from the in-process hand-off when validation ran
in this process (:mod:`streams.stages.handoff`: decoded once, from exactly the bytes whose
SHA-256 the event carries), otherwise re-read it (its SHA-256 must still match what validation
saw: a file replaced between the stages is refused, not inferred) and decode it with the
validator's own decoder; then run one batched inference per model. An image that fails —
unreadable, changed, undecodable, unknown or refused model — fails alone as a rejection with
its code; the rest of the batch is unaffected. Versions running in shadow (beside the active
one, or the active one beside a canary) deliver their outcomes to ``inference.shadow`` only.
Where the active version and another version of the same model both ran on an image, the pair
is reported for live comparison metrics. The batch is acknowledged only after all outcomes are
delivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from schemas.errors import ErrorCode, RadstreamError, error_for
from schemas.events import (
    ImageValidated,
    InferenceCompleted,
    ShadowOutcome,
    Stage,
)
from schemas.rollout import PairAgreement, RolloutMode
from schemas.settings import ValidationSettings
from streams.inference.batching import InferenceOutcome, InferenceRequest, infer_batch
from streams.inference.comparison import pair_live_outcomes
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from streams.kafka import Outgoing
from streams.pipeline import Incoming, dead_letter_for, parse_event
from streams.stages.common import ImageReader, image_rejected, read_image_or_outcome, run_decoder
from streams.stages.handoff import PixelHandoff
from streams.topics import TopicKey
from streams.validation import decode_pixels

ModelBatchHook = Callable[[str, str, int, float], None]
# Called once per validated event when a hand-off store is configured: True on a hit.
PixelHandoffHook = Callable[[bool], None]


class ModelOutcomeHook(Protocol):
    """Called once per image per model version that saw it (drift and rollout metrics)."""

    def __call__(
        self,
        model: str,
        model_version: str,
        outcome: str,
        *,
        shadow: bool,
        scores: Mapping[str, float] | None,
        statistics: Mapping[str, float] | None,
    ) -> None:
        """``outcome`` is ``scored``, ``out_of_distribution`` or ``failed``."""


class ModelComparisonHook(Protocol):
    """Called once per image the active version and a shadow or canary version both handled."""

    def __call__(
        self,
        model: str,
        baseline_version: str,
        candidate_version: str,
        agreement: PairAgreement,
        *,
        score_deltas: Mapping[str, float],
    ) -> None:
        """``score_deltas`` are candidate minus baseline, per label both scored."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    message: Incoming
    request: InferenceRequest


class InferenceStage:
    """Turns a batch of validated images into results and per-image rejections."""

    stage = Stage.INFERENCE

    def __init__(
        self,
        reader: ImageReader,
        registry: ModelRegistry,
        rules: RoutingRules,
        limits: ValidationSettings,
        *,
        on_model_batch: ModelBatchHook | None = None,
        on_model_outcome: ModelOutcomeHook | None = None,
        on_model_comparison: ModelComparisonHook | None = None,
        handoff: PixelHandoff | None = None,
        on_pixel_handoff: PixelHandoffHook | None = None,
    ) -> None:
        self._reader = reader
        self._handoff = handoff
        self._on_pixel_handoff = on_pixel_handoff
        self._registry = registry
        self._rules = rules
        self._limits = limits
        self._on_model_batch = on_model_batch
        self._on_model_outcome = on_model_outcome
        self._on_model_comparison = on_model_comparison

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """Results and rejections for ``batch``; order of messages is kept per image."""
        out: list[Outgoing] = []
        events: list[tuple[Incoming, ImageValidated]] = []
        for message in batch:
            try:
                events.append((message, parse_event(message, ImageValidated)))
            except RadstreamError as exc:
                out.append(dead_letter_for(message, self.stage, exc))
        return out + await self.infer(events)

    async def infer(self, events: Sequence[tuple[Incoming, ImageValidated]]) -> list[Outgoing]:
        """Results and rejections for validated images, each with the message it came from.

        That message is the one a dead letter keeps and whose correlation id the outcomes
        carry: the ``images.validated`` message here, the arrival when validation and
        inference run as one step (:mod:`streams.stages.fused`).
        """
        out: list[Outgoing] = []
        prepared: list[_Prepared] = []
        for message, event in events:
            ready = await self._prepare(message, event)
            if isinstance(ready, Outgoing):
                out.append(ready)
            else:
                prepared.append(ready)
        if not prepared:
            return out
        by_request = {id(p.request): p.message for p in prepared}
        started = time.perf_counter()
        outcomes = await asyncio.to_thread(
            partial(infer_batch, include_shadows=True),
            [p.request for p in prepared],
            self._registry,
            self._rules,
        )
        self._report_model_batches(outcomes, time.perf_counter() - started)
        self._report_model_outcomes(outcomes)
        self._report_model_comparisons(outcomes)
        out.extend(self._route(by_request[id(o.request)], o) for o in outcomes)
        return out

    def _route(self, message: Incoming, outcome: InferenceOutcome) -> Outgoing:
        """A published outcome to ``inference.results`` or ``images.rejected``; a shadow's to
        ``inference.shadow`` (stored for comparison, never seen downstream)."""
        # Every outcome without a result carries its error (infer_batch never drops one).
        value = outcome.result or outcome.rejection()
        if outcome.shadow:
            shadow = (
                ShadowOutcome(result=value)
                if isinstance(value, InferenceCompleted)
                else ShadowOutcome(rejection=value)
            )
            return Outgoing(
                TopicKey.INFERENCE_SHADOW, value.message_key(), shadow, message.out_headers()
            )
        topic = (
            TopicKey.INFERENCE_RESULTS
            if isinstance(value, InferenceCompleted)
            else TopicKey.IMAGES_REJECTED
        )
        # Keyed by the study (schemas.events.study_key), never by the consumed message's key.
        return Outgoing(topic, value.message_key(), value, message.out_headers())

    async def _prepare(self, message: Incoming, event: ImageValidated) -> _Prepared | Outgoing:
        pixels = self._handed_off(event)
        if pixels is None:
            decoded = await self._read_and_decode(message, event)
            if isinstance(decoded, Outgoing):
                return decoded
            pixels = decoded
        request = InferenceRequest(
            event=event, correlation_id=message.correlation_id, pixels=pixels
        )
        return _Prepared(message, request)

    def _handed_off(self, event: ImageValidated) -> NDArray[np.float32] | None:
        """Validation's pixels for exactly these bytes (same process), or None on a miss."""
        if self._handoff is None:
            return None
        pixels = self._handoff.take(event.event_id, event.sha256)
        if self._on_pixel_handoff is not None:
            self._on_pixel_handoff(pixels is not None)
        return pixels

    async def _read_and_decode(
        self, message: Incoming, event: ImageValidated
    ) -> NDArray[np.float32] | Outgoing:
        """Read the image again, check it is still the validated bytes, decode it."""
        data = await read_image_or_outcome(self._reader, message, self.stage, event)
        if isinstance(data, Outgoing):
            return data
        if hashlib.sha256(data).hexdigest() != event.sha256:
            changed = error_for(ErrorCode.CHECKSUM_MISMATCH, "image bytes changed after validation")
            return self._rejected(message, event, changed)
        try:
            return await run_decoder(
                decode_pixels,
                data,
                event.geometry,
                allow_raw_dicom=self._limits.allow_raw_dicom,
                limits=self._limits,
            )
        except RadstreamError as exc:
            return self._rejected(message, event, exc)

    def _report_model_batches(self, outcomes: Sequence[InferenceOutcome], seconds: float) -> None:
        if self._on_model_batch is None:
            return
        sizes: dict[tuple[str, str], int] = {}
        for outcome in outcomes:
            if outcome.result is not None:
                key = (outcome.result.model.name, outcome.result.model.version)
                sizes[key] = sizes.get(key, 0) + 1
        for (name, version), size in sizes.items():
            self._on_model_batch(name, version, size, seconds)

    def _report_model_outcomes(self, outcomes: Sequence[InferenceOutcome]) -> None:
        if self._on_model_outcome is None:
            return
        for outcome in outcomes:
            if outcome.input_statistics is None or outcome.model_id is None:
                continue  # never reached a model (routing, resolving or preprocessing failed)
            name, _, version = outcome.model_id.partition("@")
            if outcome.result is not None:
                kind = "scored"
            elif outcome.error and outcome.error.code is ErrorCode.MODEL_INPUT_OUT_OF_DISTRIBUTION:
                kind = "out_of_distribution"
            else:
                kind = "failed"
            self._on_model_outcome(
                name,
                version,
                kind,
                shadow=outcome.shadow,
                scores=outcome.result.scores if outcome.result else None,
                statistics={k.value: v for k, v in outcome.input_statistics.items()},
            )

    def _report_model_comparisons(self, outcomes: Sequence[InferenceOutcome]) -> None:
        if self._on_model_comparison is None:
            return
        for pair in pair_live_outcomes(outcomes, self._is_active):
            self._on_model_comparison(
                pair.model,
                pair.baseline_version,
                pair.candidate_version,
                pair.agreement,
                score_deltas=pair.score_deltas,
            )

    def _is_active(self, name: str, version: str) -> bool:
        return self._registry.mode(name, version).mode is RolloutMode.ACTIVE

    def _rejected(
        self, message: Incoming, event: ImageValidated, error: RadstreamError
    ) -> Outgoing:
        return image_rejected(
            message, self.stage, event, error.code, error.reason, retryable=error.retryable
        )
