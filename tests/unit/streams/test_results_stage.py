"""The results stage as the batching sink's runtime: flush, isolate a bad row, dead-letter it."""

from __future__ import annotations

from typing import Any

from bench.sink_events import make_rejection, make_result
from schemas.errors import ErrorCode, error_for
from schemas.events import DeadLetter, InferenceCompleted, ShadowOutcome, Stage, StorableEvent
from streams.batching_sink import Backpressure
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.stages.results import ResultsStage
from streams.topics import TopicKey, TopicNames

TOPICS = TopicNames("p.")


class FakeSink:
    """Stores what is flushed; refuses (non-retryable) a batch holding a poisoned result."""

    def __init__(self, poisoned: set[str] | None = None, down_for: int = 0) -> None:
        self.backpressure = Backpressure(
            RetryPolicy.until_done(initial_seconds=0, max_seconds=0), sleep=self._no_sleep
        )
        self.poisoned = poisoned or set()
        self.down_for = down_for
        self.pending: list[StorableEvent] = []
        self.stored: list[StorableEvent] = []

    @staticmethod
    async def _no_sleep(_seconds: float) -> None:
        return None

    def add(self, item: StorableEvent) -> None:
        self.pending.append(item)

    def clear(self) -> None:
        self.pending = []

    async def flush(self) -> Any:
        if self.down_for:
            self.down_for -= 1
            raise error_for(ErrorCode.DATABASE_UNAVAILABLE)
        if any(getattr(e, "requested_by", None) in self.poisoned for e in self.pending):
            raise ValueError("row refused")
        self.stored += self.pending
        self.pending = []
        return len(self.stored)


def message(topic: TopicKey, event: Any, offset: int) -> Incoming:
    return Incoming(TOPICS[topic], 0, offset, None, event.model_dump_json().encode())


class TestResultsStage:
    async def test_stores_the_batch_and_reports_results(self) -> None:
        """Results and rejections go in one flush; on_stored sees each stored result."""
        sink = FakeSink(down_for=2)  # the database comes back after two waits
        seen: list[InferenceCompleted] = []
        stage = ResultsStage(sink, TOPICS, on_stored=seen.append)
        result, rejection = make_result(user="a"), make_rejection()
        out = await stage.handle(
            [
                message(TopicKey.INFERENCE_RESULTS, result, 0),
                message(TopicKey.IMAGES_REJECTED, rejection, 1),
            ]
        )
        assert out == []
        assert sink.stored == [result, rejection]
        assert seen == [result]

    async def test_shadow_outcomes_are_stored_but_not_reported_as_results(self) -> None:
        """inference.shadow is consumed and stored; on_stored (published latency) skips it."""
        sink = FakeSink()
        seen: list[InferenceCompleted] = []
        stage = ResultsStage(sink, TOPICS, on_stored=seen.append)
        shadow = ShadowOutcome(result=make_result(version="2.0.0"))
        refused = ShadowOutcome(rejection=make_rejection(stage=Stage.INFERENCE))
        out = await stage.handle(
            [
                message(TopicKey.INFERENCE_SHADOW, shadow, 0),
                message(TopicKey.INFERENCE_SHADOW, refused, 1),
            ]
        )
        assert out == []
        assert sink.stored == [shadow, refused]
        assert seen == []

    async def test_a_bad_row_is_dead_lettered_alone(self) -> None:
        """When the batch is refused, rows are written one by one and only the culprit fails."""
        sink = FakeSink(poisoned={"bad"})
        errors: list[BaseException] = []
        stage = ResultsStage(sink, TOPICS, on_write_error=errors.append)
        good, bad = make_result(user="good", index=1), make_result(user="bad", index=2)
        out = await stage.handle(
            [
                message(TopicKey.INFERENCE_RESULTS, good, 0),
                message(TopicKey.INFERENCE_RESULTS, bad, 1),
            ]
        )
        assert sink.stored == [good]
        assert [o.topic for o in out] == [TopicKey.DEADLETTER]
        letter = out[0].value
        assert isinstance(letter, DeadLetter)
        assert letter.source_offset == 1
        assert len(errors) == 1
        assert sink.pending == []

    async def test_unparseable_and_foreign_messages_are_dead_lettered(self) -> None:
        """Junk and a topic the stage does not consume become dead letters; the rest is stored."""
        sink = FakeSink()
        stage = ResultsStage(sink, TOPICS)
        junk = Incoming(TOPICS[TopicKey.INFERENCE_RESULTS], 0, 5, None, b"{not json")
        foreign = Incoming("p.other", 0, 0, None, b"{}")
        out = await stage.handle([junk, foreign])
        assert [o.topic for o in out] == [TopicKey.DEADLETTER, TopicKey.DEADLETTER]
        assert sink.stored == []
