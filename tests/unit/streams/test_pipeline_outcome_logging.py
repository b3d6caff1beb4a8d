"""The stage runner logs each outcome once, with its message context and without PHI."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import structlog

from observability.logging import PAYLOAD_LOGGERS, configure_logging
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.errors import ErrorCode, error_for
from schemas.events import ImageArrived, ImageRejected, ImageValidated, Stage
from schemas.settings import LoggingSettings, ValidationSettings
from streams.kafka import Outgoing
from streams.pipeline import Incoming, NullObserver, dead_letter_for, parse_event, process_batch
from streams.retry import RetryPolicy
from streams.router import arrival_for_file
from streams.stages.common import ImageReader
from streams.stages.validation import ValidationStage
from streams.topics import TopicKey
from streams.validation import ClinicalRules
from tests.dicom_support import variant

pytestmark = pytest.mark.requirement("RS-LOG-01", "RS-G-01")


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """JSON logging at DEBUG into a buffer; undone afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    previous = root.level
    configure_logging(LoggingSettings(format="json", level="DEBUG"), stream=stream)
    yield stream
    for handler in [h for h in root.handlers if getattr(h, "_radstream_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(previous)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    """The JSON lines written so far."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


GOOD, BAD, POISON = "a1" * 16, "b2" * 16, "c3" * 16


def message(offset: int, value: bytes, correlation_id: bytes | None = GOOD.encode()) -> Incoming:
    """A consumed arrival at ``offset``."""
    headers = () if correlation_id is None else ((CORRELATION_ID_HEADER, correlation_id),)
    return Incoming("p.images.arrived", 3, offset, b"k", value, headers)


class MixedHandler:
    """Dead-letters poison, rejects an arrival whose source is "bad", passes the rest through."""

    stage = Stage.VALIDATION

    async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for m in batch:
            try:
                event = parse_event(m, ImageArrived)
            except Exception as exc:  # noqa: BLE001 - the test handler mirrors a stage's guard
                out.append(dead_letter_for(m, self.stage, exc))
                continue
            if event.source == "bad":
                rejected = ImageRejected(
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                    stage=self.stage,
                    error_code=ErrorCode.IMAGE_EMPTY,
                    reason="image file is empty",
                )
                out.append(Outgoing(TopicKey.IMAGES_REJECTED, m.key, rejected, m.out_headers()))
            else:
                out.append(Outgoing(TopicKey.IMAGES_VALIDATED, m.key, event, m.out_headers()))
        return out


async def deliver(_messages: Sequence[Outgoing]) -> None:
    """A broker that accepts everything."""


def arrival(source: str) -> bytes:
    """An arrival event's bytes."""
    return ImageArrived(source=source, image_uri="file:///data/x.dcm").model_dump_json().encode()


class TestOutcomeLogging:
    async def test_each_outcome_is_logged_with_context(self, logs: io.StringIO) -> None:
        """Processed, rejected and dead-lettered messages each log one line with their position."""
        batch = [
            message(10, arrival("good"), GOOD.encode()),
            message(11, arrival("bad"), BAD.encode()),
            message(12, b'{"PatientName": "Doe^John"', POISON.encode()),
        ]
        await process_batch(MixedHandler(), batch, deliver, NullObserver())
        found = {
            line["event"]: line
            for line in lines(logs)
            if line["event"] in {"message_processed", "image_rejected", "message_dead_lettered"}
        }
        assert {k: (v["correlation_id"], v["offset"]) for k, v in found.items()} == {
            "message_processed": (GOOD, 10),
            "image_rejected": (BAD, 11),
            "message_dead_lettered": (POISON, 12),
        }
        assert found["image_rejected"]["error_code"] == "IMAGE_EMPTY"
        assert {v["stage"] for v in found.values()} == {"validation"}
        assert {v["topic"] for v in found.values()} == {"p.images.arrived"}

    async def test_poison_value_never_logged(self, logs: io.StringIO) -> None:
        """The dead-lettered message's bytes are not in the log, only its code and reason."""
        await process_batch(
            MixedHandler(), [message(1, b'{"PatientName": "Doe^John"')], deliver, NullObserver()
        )
        assert "Doe" not in logs.getvalue()

    async def test_handler_crash_logs_only_the_type(self, logs: io.StringIO) -> None:
        """A crashing handler is logged by exception type; its message text is not."""

        class Crashing:
            stage = Stage.INFERENCE

            async def handle(self, batch: Sequence[Incoming]) -> list[Outgoing]:
                raise RuntimeError("Smith^Anna broke it")

        await process_batch(Crashing(), [message(1, b"{}")], deliver, NullObserver())
        crash = [line for line in lines(logs) if line["event"] == "stage_handler_crashed"]
        assert crash[0]["error_type"] == "RuntimeError"
        assert "Smith" not in logs.getvalue()

    async def test_delivery_retry_is_logged(self, logs: io.StringIO) -> None:
        """A failed delivery attempt is logged as a warning before it is retried."""
        calls: list[int] = []

        async def flaky(_messages: Sequence[Outgoing]) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise error_for(ErrorCode.BROKER_UNAVAILABLE, "down")

        told: list[tuple[Stage, ErrorCode]] = []

        class Observer(NullObserver):
            def retried(self, stage: Stage, code: ErrorCode) -> None:
                told.append((stage, code))

        await process_batch(MixedHandler(), [message(1, arrival("good"))], flaky, Observer())
        retried = [line for line in lines(logs) if line["event"] == "delivery_retried"]
        assert retried[0]["level"] == "warning"
        # ... and counted (radstream_retries_total) under the stage, as an unavailable broker.
        assert told == [(MixedHandler.stage, ErrorCode.BROKER_UNAVAILABLE)]


class TestBodyPartNamesNeverLeave:
    """A surname in BodyPartExamined, through the real validation stage and the stage runner."""

    NAME = "CANARYDOE"  # code-string shaped, so only the defined-term rule keeps it out

    @staticmethod
    def arrival(root: Path, name: str, body_part: str, model_ids: tuple[str, ...]) -> bytes:
        path = root / name
        path.write_bytes(variant(BodyPartExamined=body_part))
        event = arrival_for_file(path, source="pacs-1", model_ids=model_ids)
        return event.model_dump_json().encode()

    async def run(self, root: Path, body_part: str) -> list[Outgoing]:
        """One arrival accepted by an open rule, one checked by a chest-only rule."""
        rules = ClinicalRules.model_validate(
            {"models": {"chest-ct": {"allowed_body_parts": ["CHEST"]}}}
        )
        limits = ValidationSettings()
        reader = ImageReader([root], limits.max_file_bytes, RetryPolicy(max_attempts=1))
        batch = [
            message(1, self.arrival(root, "open.dcm", body_part, ())),
            message(2, self.arrival(root, "chest.dcm", body_part, ("chest-ct",))),
        ]
        return await process_batch(
            ValidationStage(reader, limits, rules), batch, deliver, NullObserver()
        )

    async def test_name_reaches_no_event_log_line_or_reason(
        self, tmp_path: Path, logs: io.StringIO
    ) -> None:
        """Accepted without a body part; refused by the chest rule with a reason that lacks it."""
        out = await self.run(tmp_path, self.NAME)
        validated, rejected = (o.value for o in out)
        assert isinstance(validated, ImageValidated)
        assert validated.geometry.body_part is None
        assert isinstance(rejected, ImageRejected)
        assert rejected.error_code is ErrorCode.CLINICAL_BODY_PART_NOT_ALLOWED
        assert {line["event"] for line in lines(logs)} >= {"message_processed", "image_rejected"}
        produced = validated.model_dump_json() + rejected.model_dump_json()
        assert self.NAME not in produced + logs.getvalue()

    @pytest.mark.parametrize("written", ["CHEST", "chest"])
    async def test_a_defined_term_goes_on_as_before(self, tmp_path: Path, written: str) -> None:
        """CHEST, in either case, is carried as CHEST and passes the chest-only rule."""
        out = await self.run(tmp_path, written)
        assert [type(o.value) for o in out] == [ImageValidated, ImageValidated]
        assert {o.value.geometry.body_part for o in out if isinstance(o.value, ImageValidated)} == {
            "CHEST"
        }


class TestCorrelationId:
    @pytest.mark.parametrize(
        "header", [b"Doe^John", b"MRN-55667788", b"Pembertonwhistle-Agatha", b"c-good"]
    )
    def test_phi_shaped_header_is_replaced(self, header: bytes) -> None:
        """A correlation id that is not a UUID or hex digest is replaced by the position's id."""
        replaced = message(1, b"", header)
        assert replaced.correlation_id == message(1, b"", None).correlation_id
        assert replaced.out_headers() == (
            (CORRELATION_ID_HEADER, replaced.correlation_id.encode()),
        )

    def test_accepted_header_is_kept_canonical(self) -> None:
        """A UUID header travels on in canonical form."""
        supplied = uuid.uuid4()
        assert message(1, b"", str(supplied).upper().encode()).correlation_id == supplied.hex

    async def test_refused_header_never_reaches_logs_or_dead_letters(
        self, logs: io.StringIO
    ) -> None:
        """The outcome lines and the dead letter of a message with a PHI-shaped id lack it."""
        batch = [
            message(20, arrival("good"), b"MRN-55667788"),
            message(21, b"{not json", b"Pembertonwhistle-Agatha"),
        ]
        out = await process_batch(MixedHandler(), batch, deliver, NullObserver())
        produced = repr([(o.headers, o.value.model_dump_json()) for o in out])
        for text in ("55667788", "Pembertonwhistle", "UGVtYmVydG9ud2hpc3RsZ"):  # base64 too
            assert text not in logs.getvalue()
            assert text not in produced

    def test_replacement_is_stable_per_message(self) -> None:
        """Every outcome of one message, and every redelivery, shares the replacement id."""
        first, again = message(5, b"", None), message(5, b"", None)
        assert first.correlation_id == again.correlation_id
        assert first.correlation_id != message(6, b"", None).correlation_id
        assert uuid.UUID(hex=first.correlation_id)


class TestPayloadLoggers:
    def test_payload_loggers_stay_at_info(self, logs: io.StringIO) -> None:
        """aiokafka's payload-printing loggers never log at DEBUG, whatever the level."""
        for name in PAYLOAD_LOGGERS:
            assert logging.getLogger(name).getEffectiveLevel() == logging.INFO
        logging.getLogger("aiokafka.producer.producer").debug("Sending value=%s", b"Doe^John")
        assert "Sending" not in logs.getvalue()
