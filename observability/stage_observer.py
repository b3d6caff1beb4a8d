"""The stage runner's hooks, recorded as Prometheus metrics (the one place stages are measured)."""

from __future__ import annotations

from collections.abc import Sequence

from observability.metrics import Metrics, Outcome
from schemas.errors import ErrorCode
from schemas.events import Stage
from streams.pipeline import SHADOW_OUTCOME

_OUTCOMES: dict[str, Outcome] = {
    "rejected": Outcome.REJECTED,
    "dead_lettered": Outcome.DEAD_LETTERED,
}


class MetricsObserver:
    """Turns :class:`streams.pipeline.StageObserver` hooks into metric updates."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def batch_processed(
        self, stage: Stage, size: int, seconds: float, outcomes: Sequence[tuple[str, str | None]]
    ) -> None:
        """Count the batch, its events by outcome, rejections and dead letters by code."""
        self._metrics.stage_batch(stage, size)
        for _ in range(size):
            self._metrics.stage_received(stage)
        # Shadow outcomes are counted per model version (role="shadow"), not as the event's.
        published = [(outcome, code) for outcome, code in outcomes if outcome != SHADOW_OUTCOME]
        # A sink stage answers only its failures (dead letters): what it stored has no message.
        stored = [("stored", None)] * max(size - len(published), 0)
        for outcome, code in [*published, *stored]:
            kind = _OUTCOMES.get(outcome, Outcome.SUCCEEDED)
            # Every event of a batch waited for the whole batch: that is its stage latency.
            self._metrics.stage_processed(stage, kind, seconds)
            if kind is Outcome.REJECTED and code is not None:
                self._metrics.rejected(stage, ErrorCode(code))
            elif kind is Outcome.DEAD_LETTERED and code is not None:
                self._metrics.dead_lettered(stage, ErrorCode(code))

    def in_flight(self, stage: Stage, delta: int) -> None:
        """Messages entered or left the stage's work."""
        self._metrics.stage_in_flight(stage, delta)

    def retried(self, stage: Stage, code: ErrorCode) -> None:
        """Work of ``stage`` failed with a retryable ``code`` and is being retried."""
        self._metrics.retried(stage, code)
