"""``radstream dlq``'s parsing and rendering: masked output, refusals that need no broker."""

from __future__ import annotations

import argparse
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.deadletter_marks import DeadLetterMark, DeadLetterMarkKind
from schemas.errors import ErrorCode, error_for
from schemas.events import CORRELATION_ID_HEADER, Stage
from schemas.settings import load_settings
from streams import dlq_cli
from streams.deadletter import DeadLetterEntry, build_dead_letter

pytestmark = pytest.mark.requirement("RS-DLQ-02", "RS-G-01")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    """A ``radstream``-like parser with only the dlq command registered."""
    root = argparse.ArgumentParser(prog="radstream")
    dlq_cli.register(root.add_subparsers(dest="command", required=True))
    return root


def entry(value: bytes, *, mark: DeadLetterMark | None = None) -> DeadLetterEntry:
    """A dead letter of ``value`` at partition 0, offset 9."""
    letter = build_dead_letter(
        stage=Stage.VALIDATION,
        error=error_for(ErrorCode.EVENT_MALFORMED, "ImageArrived contract violated at: x"),
        attempts=1,
        first_failure_at=T0,
        last_failure_at=T0,
        topic="radstream.images.arrived",
        partition=2,
        offset=40,
        key=b"Doe^John",
        value=value,
        headers=[(CORRELATION_ID_HEADER, b"corr-7"), ("note", b"PatientName=Roe^Richard")],
        correlation_id="corr-7",
        event_id=None,
    )
    return DeadLetterEntry(0, 9, letter, mark)


class TestParseTime:
    def test_offset_is_kept(self) -> None:
        """A time with an offset keeps it."""
        parsed = dlq_cli.parse_time("2026-03-01T12:00:00+02:00")
        assert parsed.utcoffset() == timedelta(hours=2)

    def test_naive_time_is_utc(self) -> None:
        """A time without offset is read as UTC."""
        assert dlq_cli.parse_time("2026-03-01T12:00:00") == T0

    def test_junk_is_an_argument_error(self) -> None:
        """A non-time is reported by argparse, not as a traceback."""
        with pytest.raises(argparse.ArgumentTypeError):
            dlq_cli.parse_time("yesterday")


class TestRegister:
    def test_actions_and_filters_parse(self) -> None:
        """replay takes the filters, --dry-run, --force and a required --actor."""
        filters = ["--code", "EVENT_MALFORMED", "--id", "a", "--id", "b"]
        flags = ["--since", "2026-03-01T00:00:00Z", "--dry-run", "--force", "--actor", "ops"]
        args = parser().parse_args(["dlq", "replay", *filters, *flags])
        assert args.func is dlq_cli.cmd_dlq_replay
        assert (args.id, args.code, args.dry_run, args.force) == (
            ["a", "b"],
            "EVENT_MALFORMED",
            True,
            True,
        )
        assert args.since == datetime(2026, 3, 1, tzinfo=UTC)

    def test_purge_requires_an_actor(self) -> None:
        """Purge is audited: without --actor the command line is rejected."""
        with pytest.raises(SystemExit):
            parser().parse_args(["dlq", "purge", "--code", "EVENT_MALFORMED"])

    def test_unknown_code_is_rejected(self) -> None:
        """--code accepts only catalogue codes."""
        with pytest.raises(SystemExit):
            parser().parse_args(["dlq", "list", "--code", "NOPE"])


class TestRenderValue:
    def test_json_is_masked_by_key(self) -> None:
        """A patient attribute in a JSON value is replaced whatever its spelling."""
        shown = dlq_cli.render_value(b'{"patient_name": "John Smith", "modality": "CT"}')
        assert "John Smith" not in shown
        assert json.loads(shown)["modality"] == "CT"

    def test_text_is_masked_by_pattern(self) -> None:
        """Non-JSON text is masked by pattern (a DICOM person name here)."""
        shown = dlq_cli.render_value(b'{"broken": "Doe^John')
        assert "Doe^John" not in shown
        assert "[REDACTED_PHI]" in shown

    def test_binary_is_not_shown(self) -> None:
        """Bytes that are not UTF-8 (a DICOM file, say) are summarised, never printed."""
        assert dlq_cli.render_value(b"\x00\xff\xfeCompressed^CT1") == (
            "<17 bytes, not UTF-8 text: not shown>"
        )

    def test_control_characters_are_escaped(self) -> None:
        """A value cannot forge terminal output lines."""
        assert "\n" not in dlq_cli.render_value(b"line1\nline2\x1b[31m")


class TestRenderEntry:
    def test_metadata_shown_key_and_headers_masked(self) -> None:
        """show prints the metadata; the key and header values go through the masker."""
        text = "\n".join(dlq_cli.render_entry(entry(b'{"PatientID": "12345678"}')))
        assert "error_code:     EVENT_MALFORMED" in text
        assert "source:         radstream.images.arrived[2]@40" in text
        assert "deadletter_at:  partition 0 offset 9" in text
        for secret in ("Doe^John", "Roe^Richard", "12345678"):
            assert secret not in text

    def test_mark_is_shown(self) -> None:
        """A replayed dead letter says who replayed it and when."""
        dl_id = entry(b"x").dead_letter.dead_letter_id
        mark = DeadLetterMark(
            dead_letter_id=dl_id,
            kind=DeadLetterMarkKind.REPLAYED,
            marked_at=T0,
            actor="ops-a",
            replay_count=1,
            deadletter_partition=0,
            deadletter_offset=9,
        )
        text = "\n".join(dlq_cli.render_entry(entry(b"x", mark=mark)))
        assert f"state:          replayed by ops-a at {T0.isoformat()}" in text

    def test_entry_line_summarises(self) -> None:
        """A listing line has id, state, stage, code, attempts and source position."""
        line = dlq_cli.entry_line(entry(b"x"))
        assert line.split()[1:4] == ["new", "validation", "EVENT_MALFORMED"]
        assert line.endswith("src=radstream.images.arrived[2]@40")


class TestRefusalsWithoutBroker:
    def test_raw_is_refused_outside_development(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--raw needs RADSTREAM_ENVIRONMENT=development; production refuses before reading."""
        settings = load_settings(environment="production", api={"jwt_secret": "s" * 40})
        args = parser().parse_args(["dlq", "show", str(uuid.uuid4()), "--raw"])
        assert dlq_cli.cmd_dlq_show(settings, args) == 2
        assert "--raw is refused outside development" in capsys.readouterr().err

    def test_bad_actor_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An actor that is not a pseudonymous id is refused before anything is read."""
        args = parser().parse_args(["dlq", "replay", "--code", "TIMEOUT", "--actor", "J Doe"])
        assert dlq_cli.cmd_dlq_replay(load_settings(), args) == 2
        assert "actor must be a pseudonymous id" in capsys.readouterr().err

    def test_unfiltered_purge_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Purging everything needs an explicit filter."""
        args = parser().parse_args(["dlq", "purge", "--actor", "ops"])
        assert dlq_cli.cmd_dlq_purge(load_settings(), args) == 2
        assert "purge needs --id or at least one filter" in capsys.readouterr().err

    def test_bad_id_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A malformed dead letter id is reported as bad input."""
        args = parser().parse_args(["dlq", "list", "--id", "not-a-uuid"])
        assert dlq_cli.cmd_dlq_list(load_settings(), args) == 2
        assert capsys.readouterr().err.startswith("radstream dlq:")


def test_value_bytes_are_base64_in_the_letter() -> None:
    """Sanity of the fixture: the dead letter stores the value as base64."""
    assert base64.b64decode(entry(b"abc").dead_letter.value_b64) == b"abc"
