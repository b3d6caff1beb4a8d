"""The stage runner: nothing escapes, nothing is acked before delivery, outcomes are measured."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from observability.metrics import Metrics
from observability.stage_observer import MetricsObserver
from schemas.correlation import CORRELATION_ID_HEADER, derived_correlation_id
from schemas.errors import ErrorCode, InputValidationError, TransientError, error_for
from schemas.events import DeadLetter, ImageArrived, ImageRejected, Stage
from streams.kafka import Outgoing
from streams.pipeline import (
    Incoming,
    NullObserver,
    dead_letter_for,
    deliver_until_done,
    parse_batch,
    parse_event,
    process_batch,
)
from streams.topics import TopicKey

pytestmark = pytest.mark.requirement("RS-ERR-02", "RS-G-03", "RS-G-06")


def incoming(value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> Incoming:
    return Incoming(
        topic="t.images.arrived", partition=0, offset=7, key=b"k", value=value, headers=headers
    )


class CrashingHandler:
    stage = Stage.VALIDATION

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        raise ZeroDivisionError("boom with Doe^John inside")


class NativePanic(BaseException):
    """Stands in for pyo3's PanicException, which native decoders raise."""


class PanickingHandler:
    stage = Stage.INFERENCE

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        raise NativePanic("index out of bounds")


class CancelledHandler:
    """Stands in for a stage whose batch is cancelled by a shutdown."""

    stage = Stage.VALIDATION

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        raise asyncio.CancelledError


class RejectingHandler:
    stage = Stage.VALIDATION

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        out = []
        for message in batch:
            event = parse_event(message, ImageArrived)
            out.append(
                Outgoing(
                    TopicKey.IMAGES_REJECTED,
                    message.key,
                    ImageRejected(
                        event_id=event.event_id,
                        occurred_at=event.occurred_at,
                        stage=self.stage,
                        error_code=ErrorCode.IMAGE_EMPTY,
                        reason="empty",
                    ),
                    message.out_headers(),
                )
            )
        return out


class RecordingDelivery:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.delivered: list[Outgoing] = []

    async def __call__(self, messages: Sequence[Outgoing]) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE)
        self.delivered.extend(messages)


async def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test, never the global default one."""
    return CollectorRegistry()


@pytest.fixture
def observer(registry: CollectorRegistry) -> MetricsObserver:
    """The metrics observer under test, on the fresh registry."""
    return MetricsObserver(Metrics(registry, process_collector=False))


class TestIncoming:
    def test_correlation_id_from_header(self) -> None:
        """The producer's correlation id is kept and passed on."""
        message = incoming(b"{}", ((CORRELATION_ID_HEADER, b"abc123" * 5 + b"ef"),))
        assert message.correlation_id == "abc123" * 5 + "ef"
        assert message.out_headers() == ((CORRELATION_ID_HEADER, b"abc123" * 5 + b"ef"),)

    def test_junk_correlation_id_is_replaced(self) -> None:
        """An overlong or unprintable correlation id is replaced with the derived one."""
        message = incoming(b"{}", ((CORRELATION_ID_HEADER, b"x\n" * 50),))
        assert message.correlation_id == derived_correlation_id("t.images.arrived", 0, 7)
        assert message.header("missing") is None


class TestParseEvent:
    def test_invalid_json_is_malformed(self) -> None:
        """Bytes that are not JSON are EVENT_MALFORMED."""
        with pytest.raises(InputValidationError) as info:
            parse_event(incoming(b"\xff not json"), ImageArrived)
        assert info.value.code is ErrorCode.EVENT_MALFORMED

    def test_reason_names_fields_not_values(self) -> None:
        """The reason lists offending fields but never echoes their (possibly PHI) values."""
        value = b'{"source": "P", "image_uri": "file:///a/b.dcm", "patient_name": "Doe^John"}'
        with pytest.raises(InputValidationError) as info:
            parse_event(incoming(value), ImageArrived)
        assert "patient_name" in info.value.reason
        assert "Doe" not in info.value.reason

    def test_wrong_schema_version_has_its_own_code(self) -> None:
        """A schema version this release does not know is EVENT_SCHEMA_VERSION_UNSUPPORTED."""
        value = b'{"schema_version": 9, "source": "P", "image_uri": "file:///a/b.dcm"}'
        with pytest.raises(InputValidationError) as info:
            parse_event(incoming(value), ImageArrived)
        assert info.value.code is ErrorCode.EVENT_SCHEMA_VERSION_UNSUPPORTED


class TestParseBatch:
    GOOD = b'{"source": "P", "image_uri": "file:///a/b.dcm"}'

    def test_parsed_events_and_dead_letters(self) -> None:
        """Good messages parse; a bad one and one on a foreign topic become dead letters."""
        foreign = Incoming("t.other", 0, 1, b"k", self.GOOD, ())
        parsed, dead = parse_batch(
            [incoming(self.GOOD), incoming(b"{}"), foreign],
            {"t.images.arrived": ImageArrived},
            Stage.RESULTS_SINK,
        )
        assert [type(event) for _, event in parsed] == [ImageArrived]
        assert [d.topic for d in dead] == [TopicKey.DEADLETTER] * 2

    def test_a_skipped_topic_reports_instead_of_dead_lettering(self) -> None:
        """An arrival validation dead-letters is only reported here (never a second letter)."""
        skipped: list[tuple[int, ErrorCode]] = []
        parsed, dead = parse_batch(
            [incoming(b"{}"), incoming(self.GOOD)],
            {"t.images.arrived": ImageArrived},
            Stage.RESULTS_SINK,
            skipped_topics=frozenset({"t.images.arrived"}),
            on_skipped=lambda message, code: skipped.append((message.offset, code)),
        )
        assert dead == []
        assert len(parsed) == 1
        assert skipped == [(7, ErrorCode.EVENT_MALFORMED)]

    def test_skipping_without_a_callback_drops_nothing_else(self) -> None:
        """Without a callback the skipped arrival is still no dead letter."""
        parsed, dead = parse_batch(
            [incoming(b"{}")],
            {"t.images.arrived": ImageArrived},
            Stage.STUDIES,
            skipped_topics=frozenset({"t.images.arrived"}),
        )
        assert (parsed, dead) == ([], [])


class TestProcessBatch:
    async def test_handler_crash_dead_letters_every_message(self) -> None:
        """A crashing handler loses nothing: each message becomes a dead letter, PHI-free."""
        delivery = RecordingDelivery()
        crashes: list[BaseException] = []
        batch = [incoming(b"one"), incoming(b"two")]
        out = await process_batch(
            CrashingHandler(), batch, delivery, NullObserver(), on_handler_crash=crashes.append
        )
        assert [m.topic for m in out] == [TopicKey.DEADLETTER, TopicKey.DEADLETTER]
        letters = [m.value for m in delivery.delivered]
        assert all(isinstance(x, DeadLetter) for x in letters)
        assert [base64.b64decode(x.value_b64) for x in letters] == [b"one", b"two"]  # type: ignore[union-attr]
        assert "Doe" not in out[0].value_bytes().decode()
        assert isinstance(crashes[0], ZeroDivisionError)

    async def test_base_exception_panic_is_dead_lettered(self) -> None:
        """A native decoder's BaseException panic is contained like any other crash."""
        delivery = RecordingDelivery()
        out = await process_batch(PanickingHandler(), [incoming(b"x")], delivery, NullObserver())
        assert [m.topic for m in out] == [TopicKey.DEADLETTER]
        assert out[0].value.error_code is ErrorCode.INTERNAL_ERROR  # type: ignore[union-attr]
        assert delivery.delivered == out

    async def test_cancellation_is_not_swallowed(self) -> None:
        """Shutting the worker down cancels the batch instead of dead-lettering it."""

        with pytest.raises(asyncio.CancelledError):
            await process_batch(
                CancelledHandler(), [incoming(b"x")], RecordingDelivery(), NullObserver()
            )

    async def test_outcomes_are_measured(
        self, registry: CollectorRegistry, observer: MetricsObserver
    ) -> None:
        """Rejections are counted by stage and code through the metrics observer."""
        event = ImageArrived(source="P", image_uri="file:///a/b.dcm")
        await process_batch(
            RejectingHandler(),
            [incoming(event.model_dump_json().encode())],
            RecordingDelivery(),
            observer,
        )
        assert (
            registry.get_sample_value(
                "radstream_rejections_total", {"stage": "validation", "error_code": "IMAGE_EMPTY"}
            )
            == 1.0
        )

    def test_shadow_outcomes_are_not_the_events_outcome(
        self, registry: CollectorRegistry, observer: MetricsObserver
    ) -> None:
        """A shadow version's outcome is not counted as an event the stage finished."""
        observer.batch_processed(Stage.INFERENCE, 1, 0.1, [("inferred", None), ("shadow", None)])
        labels = {"stage": "inference", "outcome": "succeeded"}
        assert registry.get_sample_value("radstream_stage_events_processed_total", labels) == 1.0

    async def test_dead_letters_are_measured(
        self, registry: CollectorRegistry, observer: MetricsObserver
    ) -> None:
        """Dead letters are counted by stage and code."""
        await process_batch(CrashingHandler(), [incoming(b"x")], RecordingDelivery(), observer)
        assert (
            registry.get_sample_value(
                "radstream_dead_letters_total",
                {"stage": "validation", "error_code": "INTERNAL_ERROR"},
            )
            == 1.0
        )

    async def test_in_flight_counts_the_batch_while_it_runs(
        self, registry: CollectorRegistry, observer: MetricsObserver
    ) -> None:
        """The in-flight gauge holds the batch while the handler works and drops after."""
        seen: list[float | None] = []

        class Watching:
            stage = Stage.INFERENCE

            async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
                seen.append(
                    registry.get_sample_value(
                        "radstream_stage_in_flight_events", {"stage": "inference"}
                    )
                )
                return []

        batch = [incoming(b"a"), incoming(b"b")]
        await process_batch(Watching(), batch, RecordingDelivery(), observer)
        assert seen == [2.0]
        in_flight = {"stage": "inference"}
        assert registry.get_sample_value("radstream_stage_in_flight_events", in_flight) == 0.0

    async def test_in_flight_drops_when_cancelled(
        self, registry: CollectorRegistry, observer: MetricsObserver
    ) -> None:
        """A cancelled batch leaves nothing in flight (no stall alert after a shutdown)."""

        with pytest.raises(asyncio.CancelledError):
            await process_batch(CancelledHandler(), [incoming(b"x")], RecordingDelivery(), observer)
        in_flight = {"stage": "validation"}
        assert registry.get_sample_value("radstream_stage_in_flight_events", in_flight) == 0.0

    async def test_a_sink_stage_counts_what_it_stored(
        self, registry: CollectorRegistry, observer: MetricsObserver
    ) -> None:
        """Messages a sink stored produce no outgoing message and still count as succeeded."""

        class Storing:
            stage = Stage.RESULTS_SINK

            async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
                return []

        await process_batch(
            Storing(), [incoming(b"a"), incoming(b"b")], RecordingDelivery(), observer
        )
        labels = {"stage": "results_sink", "outcome": "succeeded"}
        assert registry.get_sample_value("radstream_stage_events_processed_total", labels) == 2.0


class TestDelivery:
    async def test_transient_failures_are_retried_until_delivered(self) -> None:
        """A broker outage delays delivery; it never drops the batch."""
        delivery = RecordingDelivery(failures=3)
        retries: list[int] = []
        message = Outgoing(TopicKey.IMAGES_REJECTED, None, b"x")
        await deliver_until_done(
            delivery, [message], on_retry=lambda: retries.append(1), sleep=no_sleep
        )
        assert delivery.delivered == [message]
        assert len(retries) == 3

    async def test_permanent_failure_propagates(self) -> None:
        """A non-retryable delivery error is not retried forever."""

        async def refuse(_messages: Sequence[Outgoing]) -> None:
            raise error_for(ErrorCode.INTERNAL_ERROR)

        with pytest.raises(Exception, match="INTERNAL_ERROR"):
            await deliver_until_done(refuse, [], on_retry=lambda: None, sleep=no_sleep)


class TestDeadLetterFor:
    def test_keeps_original_bytes_and_event_id(self) -> None:
        """The dead letter keeps the original key, value, headers and source coordinates."""
        event_id = uuid.uuid4()
        message = incoming(b"payload", ((CORRELATION_ID_HEADER, b"c1" * 16),))
        out = dead_letter_for(
            message, Stage.INFERENCE, error_for(ErrorCode.TIMEOUT), event_id=event_id
        )
        letter = out.value
        assert isinstance(letter, DeadLetter)
        assert letter.source_offset == 7
        assert letter.event_id == event_id
        assert letter.correlation_id == "c1" * 16
        assert letter.error_code is ErrorCode.TIMEOUT
        # The original key is kept in the letter; the letter itself is keyed by the event id.
        assert letter.key_b64 == "aw=="
        assert out.key == str(event_id).encode()
