"""Micro-batched inference: one runtime call per model per batch, failures stay per item.

:func:`infer_batch` takes the images the agent collected, routes each to its model(s),
preprocesses each image once per model, runs every model once on the stacked batch and turns
each row of scores into an :class:`~schemas.events.InferenceCompleted` with full provenance.
An item that cannot be routed, whose model is unknown or refused, or whose pixels cannot be
preprocessed fails alone. If the batched run itself raises, the batch is retried item by item
so only the culprit fails. The function never raises for a single bad item.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydantic import ValidationError

from schemas.errors import ErrorCode, InferenceError, RadstreamError, error_for
from schemas.events import (
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ModelRef,
    Stage,
    utc_now,
)
from streams.inference.input_guard import (
    InputStatistics,
    check_in_distribution,
    input_statistics,
)
from streams.inference.manifest import ModelManifest, OutputSpec
from streams.inference.preprocessing import preprocess
from streams.inference.registry import ModelRegistry, RegisteredModel
from streams.inference.routing import RoutingRules, route
from streams.inference.runtime import RUNTIME_NAME


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One validated image ready for inference."""

    event: ImageValidated
    correlation_id: str
    pixels: np.ndarray


@dataclass(frozen=True, slots=True)
class InferenceOutcome:
    """The result of one image on one model: a completed event, or the error that stopped it.

    ``model_id`` is the exact ``name@version`` once the model was resolved, the requested id
    when resolving failed, and ``None`` when the image could not be routed to any model.
    ``input_statistics`` are those of the preprocessed image (also when the input guard refused
    it), for drift monitoring; ``None`` when preprocessing did not happen. ``shadow`` marks the
    outcome of a version running in shadow: it is kept for comparison, never published.
    """

    request: InferenceRequest
    model_id: str | None
    result: InferenceCompleted | None = None
    error: RadstreamError | None = None
    input_statistics: InputStatistics | None = None
    shadow: bool = False

    @property
    def ok(self) -> bool:
        """Whether a result was produced."""
        return self.result is not None

    def rejection(self, clock: Callable[[], datetime] = utc_now) -> ImageRejected:
        """The ``ImageRejected`` event of a failed outcome (for ``images.rejected``)."""
        if self.error is None:
            raise ValueError("a successful outcome has no rejection")
        event = self.request.event
        return ImageRejected(
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            rejected_at=clock(),
            stage=Stage.INFERENCE,
            error_code=self.error.code,
            reason=self.error.reason[:500],
            retryable=self.error.retryable,
            source=event.source,
            requested_by=event.requested_by,
            study_instance_uid=event.study_instance_uid,
            model_id=self.model_id,
        )


def decide(scores: dict[str, float], output: OutputSpec) -> str:
    """Labels whose score reaches their threshold, joined with ``+``; else the negative."""
    positive = [label for label in output.labels if scores[label] >= output.thresholds[label]]
    return "+".join(positive) if positive else output.negative_decision


def check_compatible(event: ImageValidated, manifest: ModelManifest) -> None:
    """Refuse an image whose modality the model does not declare (``MODEL_INPUT_INCOMPATIBLE``)."""
    modalities = manifest.input.modalities
    if modalities and event.modality not in modalities:
        raise InferenceError(
            ErrorCode.MODEL_INPUT_INCOMPATIBLE,
            f"model {manifest.model_id} accepts {', '.join(modalities)}, "
            f"not {event.modality or 'images without a modality'}",
        )


@dataclass(slots=True)
class _Prepared:
    index: int
    request: InferenceRequest
    tensor: np.ndarray
    preprocess_seconds: float
    statistics: InputStatistics
    shadow: bool


def _complete(
    prepared: _Prepared,
    model: RegisteredModel,
    provider: str,
    row: np.ndarray,
    *,
    share_seconds: float,
    batch_size: int,
    clock: Callable[[], datetime],
) -> InferenceOutcome:
    """Turn one row of scores into an outcome, refusing rows that are not valid scores."""
    output = model.manifest.output
    request = prepared.request
    statistics, shadow = prepared.statistics, prepared.shadow
    if row.shape != (len(output.labels),) or not np.isfinite(row).all():
        error = InferenceError(
            ErrorCode.INFERENCE_FAILED,
            f"model {model.model_id} returned {row.shape} non-finite or misshaped scores, "
            f"expected {len(output.labels)} finite values",
        )
        return InferenceOutcome(
            request, model.model_id, error=error, input_statistics=statistics, shadow=shadow
        )
    scores = {label: float(value) for label, value in zip(output.labels, row, strict=True)}
    try:
        result = _result_event(
            prepared,
            model,
            provider,
            scores,
            share_seconds=share_seconds,
            batch_size=batch_size,
            clock=clock,
        )
    except ValidationError as exc:
        # Only agent-supplied values can break the contract (a correlation id over 64 chars).
        fields = ", ".join(sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]}))
        return InferenceOutcome(
            request,
            model.model_id,
            error=error_for(
                ErrorCode.EVENT_MALFORMED, f"result does not fit the event contract: {fields}"
            ),
            input_statistics=statistics,
            shadow=shadow,
        )
    return InferenceOutcome(
        request, model.model_id, result=result, input_statistics=statistics, shadow=shadow
    )


def _result_event(
    prepared: _Prepared,
    model: RegisteredModel,
    provider: str,
    scores: dict[str, float],
    *,
    share_seconds: float,
    batch_size: int,
    clock: Callable[[], datetime],
) -> InferenceCompleted:
    """The provenance-complete result event of one image on one model."""
    output = model.manifest.output
    request = prepared.request
    event = request.event
    return InferenceCompleted(
        result_id=uuid.uuid4(),
        event_id=event.event_id,
        correlation_id=request.correlation_id,
        occurred_at=event.occurred_at,
        completed_at=clock(),
        model=ModelRef(
            name=model.manifest.name,
            version=model.manifest.version,
            weights_sha256=model.manifest.weights.sha256,
            runtime=RUNTIME_NAME,
            provider=provider,
        ),
        input_sha256=event.sha256,
        verdicts=event.verdicts,
        thresholds=dict(output.thresholds),
        scores=scores,
        decision=decide(scores, output),
        inference_seconds=prepared.preprocess_seconds + share_seconds,
        batch_size=batch_size,
        requested_by=event.requested_by,
        study_instance_uid=event.study_instance_uid,
        series_instance_uid=event.series_instance_uid,
        sop_instance_uid=event.sop_instance_uid,
        modality=event.modality,
        source=event.source,
        image_uri=event.image_uri,
    )


def _scores_of(model: RegisteredModel, output: np.ndarray, expected_rows: int) -> np.ndarray:
    """The runner's output as a ``(batch, labels)`` array, or ``INFERENCE_FAILED``."""
    scores = np.asarray(output)
    if scores.ndim != 2 or scores.shape[0] != expected_rows:
        raise InferenceError(
            ErrorCode.INFERENCE_FAILED,
            f"model {model.model_id} returned shape {scores.shape} for {expected_rows} inputs",
        )
    return scores


def _run(
    model: RegisteredModel, items: list[_Prepared], clock: Callable[[], datetime]
) -> list[tuple[int, InferenceOutcome]]:
    """Run ``items`` as one batch on ``model``; on a runtime error, retry them one by one."""
    runner = model.require_runner()
    started = time.perf_counter()
    try:
        scores = _scores_of(
            model, runner.run_batch(np.stack([item.tensor for item in items])), len(items)
        )
    except Exception as exc:  # noqa: BLE001 - any runner failure must fail only its items
        if len(items) > 1:
            return [pair for item in items for pair in _run(model, [item], clock)]
        error = (
            exc
            if isinstance(exc, RadstreamError)
            else InferenceError(
                ErrorCode.INFERENCE_FAILED, f"model runner failed: {type(exc).__name__}"
            )
        )
        item = items[0]
        failed = InferenceOutcome(
            item.request,
            model.model_id,
            error=error,
            input_statistics=item.statistics,
            shadow=item.shadow,
        )
        return [(item.index, failed)]
    share = (time.perf_counter() - started) / len(items)
    provider = runner.provider
    return [
        (
            item.index,
            _complete(
                item,
                model,
                provider,
                row,
                share_seconds=share,
                batch_size=len(items),
                clock=clock,
            ),
        )
        for item, row in zip(items, scores, strict=True)
    ]


def rollout_key(event: ImageValidated) -> str:
    """What a canary share is decided by: the study UID, else the image's own event id."""
    return event.study_instance_uid or str(event.event_id)


def _prepare(
    index: int, request: InferenceRequest, model: RegisteredModel, *, shadow: bool
) -> _Prepared | InferenceOutcome:
    """Check, preprocess and guard one image for one model version; a failure is an outcome."""
    manifest = model.manifest
    statistics: InputStatistics | None = None
    try:
        check_compatible(request.event, manifest)
        started = time.perf_counter()
        tensor = preprocess(request.pixels, manifest.input)
        statistics = input_statistics(tensor, manifest.input.layout)
        elapsed = time.perf_counter() - started
        check_in_distribution(statistics, manifest)
    except RadstreamError as exc:
        return InferenceOutcome(
            request, model.model_id, error=exc, input_statistics=statistics, shadow=shadow
        )
    return _Prepared(index, request, tensor, elapsed, statistics, shadow)


def infer_batch(
    items: Sequence[InferenceRequest],
    registry: ModelRegistry,
    rules: RoutingRules,
    *,
    clock: Callable[[], datetime] = utc_now,
    include_shadows: bool = False,
) -> list[InferenceOutcome]:
    """Infer a micro-batch: one outcome per image per model version that runs, in input order.

    Each routed model id runs the versions its rollout selects (``ModelRegistry.select``):
    the published one, and with ``include_shadows`` its shadows too (outcomes marked
    ``shadow``, after the published ones of the same image). A version runs once per image
    even when several ids select it, published taking precedence over shadow. Each model
    version runs once on all its images (as one tensor). ``inference_seconds`` of a result is
    its own preprocessing time plus its share of the batched run's wall time.
    """
    # slots[i] holds the outcomes of item i, one per version that runs, filled in as they come.
    slots: list[list[InferenceOutcome | None]] = []
    groups: dict[str, tuple[RegisteredModel, list[_Prepared]]] = {}
    position: dict[tuple[int, str], int] = {}
    for index, request in enumerate(items):
        event = request.event
        try:
            model_ids = route(event.model_ids, event.modality, event.geometry.body_part, rules)
        except RadstreamError as exc:
            slots.append([InferenceOutcome(request, None, error=exc)])
            continue
        outcomes: list[InferenceOutcome | None] = []
        chosen: list[tuple[RegisteredModel, bool]] = []
        for model_id in model_ids:
            try:
                selected = registry.select(model_id, rollout_key(event))
            except RadstreamError as exc:
                outcomes.append(InferenceOutcome(request, model_id, error=exc))
                continue
            chosen += [
                (model, shadow) for model, shadow in selected if include_shadows or not shadow
            ]
        # A stable sort: published versions first, each group in the order it was asked for.
        for model, shadow in sorted(chosen, key=lambda pair: pair[1]):
            if (index, model.model_id) in position:
                continue  # two ids selecting the same version: one result, not two
            prepared = _prepare(index, request, model, shadow=shadow)
            position[(index, model.model_id)] = len(outcomes)
            if isinstance(prepared, InferenceOutcome):
                outcomes.append(prepared)
                continue
            outcomes.append(None)
            groups.setdefault(model.model_id, (model, []))[1].append(prepared)
        slots.append(outcomes)
    for model_key, (model, prepared_items) in groups.items():
        for index, outcome in _run(model, prepared_items, clock):
            slots[index][position[(index, model_key)]] = outcome
    return [outcome for outcomes in slots for outcome in outcomes if outcome is not None]
