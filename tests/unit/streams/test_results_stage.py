"""The results stage as the batching sink's runtime: flush, isolate a bad row, dead-letter it."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from bench.sink_events import make_arrival, make_rejection, make_result
from schemas.errors import ErrorCode, error_for
from schemas.events import DeadLetter, InferenceCompleted, ShadowOutcome, Stage, StorableEvent
from streams.batching_sink import Backpressure
from streams.pipeline import Incoming
from streams.retry import RetryPolicy
from streams.stages.results import ResultsStage
from streams.topics import STAGE_TOPICS, TopicKey, TopicNames

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


@pytest.mark.requirement("RS-G-04", "RS-API-01")
class TestArrivals:
    """The arrival topics give the lifecycle its first step; their junk is validation's."""

    def test_the_stage_reads_every_arrival_lane(self) -> None:
        """The agents and ACLs (derived from STAGE_TOPICS) subscribe the results stage to both."""
        reads = STAGE_TOPICS["results"].all_reads
        assert TopicKey.IMAGES_ARRIVED in reads
        assert TopicKey.IMAGES_ARRIVED_STAT in reads

    async def test_every_topic_it_reads_is_parsed_not_refused(self) -> None:
        """No topic in STAGE_TOPICS["results"] is dead-lettered as foreign by the stage."""
        stage = ResultsStage(FakeSink(), TOPICS)
        junk = [Incoming(TOPICS[key], 0, 0, None, b"{}") for key in STAGE_TOPICS["results"].reads]
        out = await stage.handle(junk)
        reasons = [o.value.reason for o in out if isinstance(o.value, DeadLetter)]
        assert not [reason for reason in reasons if "does not consume" in reason]

    async def test_arrivals_of_both_lanes_are_stored(self) -> None:
        """Routine and stat arrivals go to the sink with the batch's other events."""
        sink = FakeSink()
        stage = ResultsStage(sink, TOPICS)
        routine, stat, result = make_arrival(), make_arrival(stat=True), make_result()
        out = await stage.handle(
            [
                message(TopicKey.IMAGES_ARRIVED, routine, 0),
                message(TopicKey.IMAGES_ARRIVED_STAT, stat, 0),
                message(TopicKey.INFERENCE_RESULTS, result, 0),
            ]
        )
        assert out == []
        assert sink.stored == [routine, stat, result]

    @pytest.mark.parametrize("lane", [TopicKey.IMAGES_ARRIVED, TopicKey.IMAGES_ARRIVED_STAT])
    async def test_a_malformed_arrival_is_skipped_counted_and_not_dead_lettered(
        self, lane: TopicKey
    ) -> None:
        """Validation dead-letters it; the results stage counts and logs it without its value."""
        sink = FakeSink()
        skipped: list[ErrorCode] = []
        stage = ResultsStage(sink, TOPICS, on_arrival_skipped=skipped.append)
        phi = b'{"source": "DOE^JANE", "image_uri": "file:///1970-01-01/DOE^JANE.dcm", "x": 1}'
        good = make_arrival()
        with capture_logs() as logs:
            out = await stage.handle(
                [
                    Incoming(TOPICS[lane], 2, 7, b"DOE^JANE", phi),
                    message(TopicKey.IMAGES_ARRIVED, good, 8),
                ]
            )
        assert out == []
        assert sink.stored == [good]
        assert skipped == [ErrorCode.EVENT_MALFORMED]
        assert [(line["event"], line["offset"], line["error_code"]) for line in logs] == [
            ("results_arrival_skipped", 7, ErrorCode.EVENT_MALFORMED.value)
        ]
        assert "DOE" not in repr(logs)

    async def test_a_malformed_arrival_without_a_counter_is_still_skipped(self) -> None:
        """The counter hook is optional; the skip is not."""
        stage = ResultsStage(FakeSink(), TOPICS)
        junk = Incoming(TOPICS[TopicKey.IMAGES_ARRIVED], 0, 0, None, b"{not json")
        assert await stage.handle([junk]) == []
