"""Dead letters: built with full metadata, never leaking exception text, replayed byte-exact."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.correlation import CORRELATION_ID_HEADER, derived_correlation_id
from schemas.errors import ErrorCode, error_for
from schemas.events import DeadLetter, DeadLetterHeader, Stage
from streams.deadletter import (
    DeadLetterFilter,
    build_dead_letter,
    error_code_and_reason,
    replay_record,
)
from streams.retry import RetriesExhaustedError

pytestmark = pytest.mark.requirement("RS-DLQ-01", "RS-G-02")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CORR = "c9" * 16


def make(**overrides: Any) -> DeadLetter:
    """A dead letter with sensible defaults, overridable per test."""
    kwargs: dict[str, Any] = {
        "stage": Stage.VALIDATION,
        "error": error_for(ErrorCode.EVENT_MALFORMED, "value is not valid JSON"),
        "attempts": 1,
        "first_failure_at": T0,
        "last_failure_at": T0 + timedelta(seconds=2),
        "topic": "radstream.images.arrived",
        "partition": 4,
        "offset": 1234,
        "key": b"1.2.840.1",
        "value": b"{not json\x00\xff",
        "headers": [(CORRELATION_ID_HEADER, CORR.encode()), ("trace", b"\x01\x02")],
        "correlation_id": CORR,
        "event_id": None,
    }
    kwargs.update(overrides)
    return build_dead_letter(**kwargs)


class TestBuild:
    def test_metadata_is_kept(self) -> None:
        """Stage, code, reason, attempts, times and source position are recorded."""
        dl = make(attempts=3)
        assert dl.stage is Stage.VALIDATION
        assert dl.error_code is ErrorCode.EVENT_MALFORMED
        assert dl.reason == "value is not valid JSON"
        assert dl.attempts == 3
        assert (dl.first_failure_at, dl.last_failure_at) == (T0, T0 + timedelta(seconds=2))
        assert (dl.source_topic, dl.source_partition, dl.source_offset) == (
            "radstream.images.arrived",
            4,
            1234,
        )
        assert dl.correlation_id == CORR

    def test_original_bytes_are_base64(self) -> None:
        """Key, value and header bytes are stored exactly, as base64."""
        dl = make()
        assert base64.b64decode(dl.value_b64) == b"{not json\x00\xff"
        assert dl.key_b64 is not None
        assert base64.b64decode(dl.key_b64) == b"1.2.840.1"
        assert [(h.key, base64.b64decode(h.value_b64)) for h in dl.headers] == [
            (CORRELATION_ID_HEADER, CORR.encode()),
            ("trace", b"\x01\x02"),
        ]

    @pytest.mark.parametrize("original", [b"MRN-55667788", b"Pembertonwhistle-Agatha"])
    def test_refused_original_header_is_not_kept(self, original: bytes) -> None:
        """The stored headers hold the id the stage used, never the refused original."""
        dl = make(headers=[(CORRELATION_ID_HEADER, original), ("trace", b"t")])
        assert [(h.key, base64.b64decode(h.value_b64)) for h in dl.headers] == [
            (CORRELATION_ID_HEADER, CORR.encode()),
            ("trace", b"t"),
        ]
        assert original.decode() not in dl.model_dump_json()
        assert base64.b64encode(original).decode() not in dl.model_dump_json()

    def test_foreign_exception_text_is_never_published(self) -> None:
        """A non-radstream exception becomes INTERNAL_ERROR without its message."""
        dl = make(error=ValueError("PatientName=Doe^John at /data/doe.dcm"))
        assert dl.error_code is ErrorCode.INTERNAL_ERROR
        assert "Doe" not in dl.model_dump_json()
        assert "ValueError" in dl.reason

    def test_exhausted_retries_keep_the_original_code_in_reason(self) -> None:
        """RETRIES_EXHAUSTED dead letters name the recurring code."""
        exhausted = RetriesExhaustedError(error_for(ErrorCode.DATABASE_UNAVAILABLE), 4)
        dl = make(error=exhausted, attempts=exhausted.attempts)
        assert dl.error_code is ErrorCode.RETRIES_EXHAUSTED
        assert "DATABASE_UNAVAILABLE" in dl.reason
        assert dl.attempts == 4

    def test_event_id_string_is_parsed(self) -> None:
        """A string event id is stored as a UUID."""
        event_id = uuid.uuid4()
        assert make(event_id=str(event_id)).event_id == event_id

    def test_malformed_event_id_is_dropped(self) -> None:
        """A malformed event id does not prevent the dead letter."""
        assert make(event_id="not-a-uuid").event_id is None

    def test_missing_key_and_zero_attempts(self) -> None:
        """A keyless message is kept without a key; attempts are at least one."""
        dl = make(key=None, attempts=0)
        assert dl.key_b64 is None
        assert dl.attempts == 1

    def test_long_reason_is_truncated(self) -> None:
        """A radstream reason longer than the contract allows is cut, not refused."""
        code, reason = error_code_and_reason(error_for(ErrorCode.IMAGE_MALFORMED, "r" * 800))
        assert code is ErrorCode.IMAGE_MALFORMED
        assert len(reason) == 500


class TestReplay:
    def test_replay_restores_original_message(self) -> None:
        """Replay returns the original topic, key, value and headers byte for byte."""
        topic, key, value, headers = replay_record(make())
        assert topic == "radstream.images.arrived"
        assert key == b"1.2.840.1"
        assert value == b"{not json\x00\xff"
        assert headers == [(CORRELATION_ID_HEADER, CORR.encode()), ("trace", b"\x01\x02")]

    def test_replay_adds_missing_correlation_header(self) -> None:
        """When the original had no correlation header, the dead letter's id is added."""
        _, _, _, headers = replay_record(make(headers=[]))
        assert headers == [(CORRELATION_ID_HEADER, CORR.encode())]

    @pytest.mark.parametrize("stored", ["Pembertonwhistle-Agatha", "MRN-55667788", None])
    def test_letter_from_before_the_rule_replays_with_a_derived_id(
        self, stored: str | None
    ) -> None:
        """A dead letter holding a refused id (an older release's) replays under a derived one."""
        old = make().model_copy(
            update={
                "correlation_id": stored,
                "headers": (
                    DeadLetterHeader(
                        key=CORRELATION_ID_HEADER,
                        value_b64=base64.b64encode((stored or "x").encode()).decode(),
                    ),
                ),
            }
        )
        _, key, _, headers = replay_record(old)
        derived = derived_correlation_id("dead-letter", old.dead_letter_id)
        assert headers == [(CORRELATION_ID_HEADER, derived.encode())]
        assert key == b"1.2.840.1"

    def test_corrupt_base64_is_reported(self) -> None:
        """A tampered dead letter with invalid base64 raises ValueError."""
        dl = make().model_copy(update={"value_b64": "***"})
        with pytest.raises(ValueError, match="base64"):
            replay_record(dl)

    def test_round_trip_through_json(self) -> None:
        """A dead letter survives JSON (the topic format) and still replays exactly."""
        dl = DeadLetter.model_validate_json(make().model_dump_json())
        assert replay_record(dl)[2] == b"{not json\x00\xff"


class TestDeadLetterFilterMatches:
    def test_no_filters_match_everything(self) -> None:
        """Without filters every dead letter matches."""
        assert DeadLetterFilter().matches(make())

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"code": ErrorCode.EVENT_MALFORMED}, True),
            ({"code": "EVENT_MALFORMED"}, True),
            ({"code": ErrorCode.IMAGE_EMPTY}, False),
            ({"stage": Stage.VALIDATION}, True),
            ({"stage": "inference"}, False),
            ({"since": T0 + timedelta(seconds=2)}, True),
            ({"since": T0 + timedelta(seconds=3)}, False),
            ({"until": T0 + timedelta(seconds=3)}, True),
            ({"until": T0 + timedelta(seconds=2)}, False),
            ({"code": "EVENT_MALFORMED", "stage": "inference"}, False),
        ],
    )
    def test_filters(self, filters: dict[str, Any], expected: bool) -> None:
        """Code, stage and [since, until) on the last failure time all have to hold."""
        assert DeadLetterFilter(**filters).matches(make()) is expected

    def test_unknown_code_is_refused(self) -> None:
        """A code that is not in the catalogue is an error, not a silent non-match."""
        with pytest.raises(ValueError, match="NOPE"):
            DeadLetterFilter(code="NOPE")  # type: ignore[arg-type]

    def test_naive_times_are_refused(self) -> None:
        """Time filters without a timezone are refused."""
        with pytest.raises(ValueError, match="timezone"):
            DeadLetterFilter(since=datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
