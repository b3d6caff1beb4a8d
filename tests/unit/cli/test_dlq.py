"""``radstream dlq``: parsing, masked rendering, and refusals that need no broker."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import click
import pytest

import app
from cli import dlq
from cli.errors import CommandError
from cli.main import main
from cli.params import WORKER_STAGE_FOR, spelling
from schemas.correlation import CORRELATION_ID_HEADER, derived_correlation_id
from schemas.deadletter_marks import DeadLetterMark, DeadLetterMarkKind
from schemas.errors import ErrorCode, error_for
from schemas.events import DeadLetterHeader, Stage
from schemas.settings import load_settings
from streams.deadletter import DeadLetterEntry, DeadLetterFilter, build_dead_letter

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CORR = "c7" * 16
# Nothing listens on port 1: a command that reached the broker would fail with exit 5.
NO_BROKER = load_settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="rstest.nobroker.")


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
        headers=[(CORRELATION_ID_HEADER, CORR.encode()), ("note", b"PatientName=Roe^Richard")],
        correlation_id=CORR,
        event_id=None,
    )
    return DeadLetterEntry(0, 9, letter, mark)


class TestSelection:
    def test_options_become_one_filter(self) -> None:
        """--id, --code, --stage, --since and --until reach the command as one DeadLetterFilter."""
        seen: list[DeadLetterFilter] = []

        @click.command()
        @dlq.selection_options
        def action(*, selection: DeadLetterFilter) -> None:
            seen.append(selection)

        first, second = uuid.uuid4(), uuid.uuid4()
        action.main(
            [
                "--id", str(first), "--id", str(second), "--code", "event_malformed",
                "--stage", "validation", "--since", "2026-03-01T12:00:00",
            ],
            standalone_mode=False,
        )  # fmt: skip
        assert seen == [
            DeadLetterFilter(
                ids=frozenset({first, second}),
                code=ErrorCode.EVENT_MALFORMED,
                stage=Stage.VALIDATION,
                since=T0,
            )
        ]

    @staticmethod
    def stage_of(value: str) -> Stage | None:
        """What ``--stage value`` selects."""
        seen: list[DeadLetterFilter] = []

        @click.command()
        @dlq.selection_options
        def action(*, selection: DeadLetterFilter) -> None:
            seen.append(selection)

        action.main(["--stage", value], standalone_mode=False)
        return seen[0].stage

    @pytest.mark.parametrize("stage", list(Stage))
    def test_stage_takes_the_dead_letters_spelling(self, stage: Stage) -> None:
        """--stage dicom_export selects the dicom_export letters."""
        assert self.stage_of(stage.value) is stage

    @pytest.mark.parametrize("worker_stage", app.ALL_STAGES)
    def test_stage_takes_the_workers_spelling_too(self, worker_stage: str) -> None:
        """--stage dicom-export or results (as `worker --stages` spells them) selects the Stage
        that worker stage's dead letters carry."""
        stage = self.stage_of(worker_stage)
        assert stage is not None
        assert spelling(WORKER_STAGE_FOR.get(stage, stage.value)) == spelling(worker_stage)

    def test_help_lists_the_stages(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`dlq list --help` shows the valid stages and says the worker's spelling is accepted."""
        assert main(["dlq", "list", "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "|".join(s.value for s in Stage) in out
        assert "the worker's spellings (dicom-export, results) are accepted" in out

    @pytest.mark.parametrize(
        ("argv", "reason"),
        [
            (["dlq", "list", "--code", "NOPE"], "'NOPE' is not an error code"),
            (["dlq", "list", "--limit", "-1"], "-1 is not in the range x>=1"),
            (["dlq", "list", "--id", "not-a-uuid"], "'not-a-uuid' is not a valid UUID"),
            (["dlq", "list", "--since", "yesterday"], "'yesterday' is not an ISO 8601 time"),
            (["dlq", "purge", "--code", "TIMEOUT"], "Missing option '--actor'"),
            (["dlq", "replay", "--code", "TIMEOUT", "--actor", "J Doe"], "not a valid actor id"),
            (["dlq", "purge", "--actor", "ops"], "purge needs --id or at least one of"),
            (["dlq", "replay", "--actor", "ops"], "replay needs --id or at least one of"),
        ],
    )
    def test_bad_command_lines_are_one_usage_line(
        self, argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Refused while parsing, before the broker is asked: exit 2 and one line saying why."""
        assert main(argv, settings=NO_BROKER) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "REQUEST_INVALID" in err
        assert reason in err

    def test_a_typo_in_a_code_gets_suggestions_not_the_catalogue(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A misspelt code names the closest codes, never all of them."""
        assert main(["dlq", "list", "--code", "TIMEOUTT"], settings=NO_BROKER) == 2
        err = capsys.readouterr().err
        assert "did you mean TIMEOUT" in err
        assert "CLINICAL_MODALITY_NOT_ALLOWED" not in err


class TestRenderValue:
    def test_json_is_masked_by_key(self) -> None:
        """A patient attribute in a JSON value is replaced whatever its spelling."""
        shown = dlq.render_value(b'{"patient_name": "John Smith", "modality": "CT"}')
        assert "John Smith" not in shown
        assert json.loads(shown)["modality"] == "CT"

    def test_text_is_masked_by_pattern(self) -> None:
        """Non-JSON text is masked by pattern (a DICOM person name here)."""
        shown = dlq.render_value(b'{"broken": "Doe^John')
        assert "Doe^John" not in shown
        assert "[REDACTED_PHI]" in shown

    def test_binary_is_not_shown(self) -> None:
        """Bytes that are not UTF-8 (a DICOM file, say) are summarised, never printed."""
        assert dlq.render_value(b"\x00\xff\xfeCompressed^CT1") == (
            "<17 bytes, not UTF-8 text: not shown>"
        )

    def test_control_characters_are_escaped(self) -> None:
        """A value cannot forge terminal output lines."""
        assert "\n" not in dlq.render_value(b"line1\nline2\x1b[31m")


class TestRenderEntry:
    def test_metadata_shown_key_and_headers_masked(self) -> None:
        """show prints the metadata; the key and header values go through the masker."""
        text = "\n".join(dlq.render_entry(entry(b'{"PatientID": "12345678"}')))
        assert "error_code:     EVENT_MALFORMED" in text
        assert "source:         radstream.images.arrived[2]@40" in text
        assert "deadletter_at:  partition 0 offset 9" in text
        for secret in ("Doe^John", "Roe^Richard", "12345678"):
            assert secret not in text

    def test_json_form_is_masked_too(self) -> None:
        """--json of show carries the same masked key, headers and value."""
        facts = json.dumps(dlq.masked_entry(entry(b'{"PatientID": "12345678"}')))
        assert '"error_code": "EVENT_MALFORMED"' in facts
        for secret in ("Doe^John", "Roe^Richard", "12345678"):
            assert secret not in facts

    def test_correlation_id_is_shown(self) -> None:
        """The dead letter's own (accepted) correlation id is shown, once as header too."""
        text = "\n".join(dlq.render_entry(entry(b"x")))
        assert f"correlation_id: {CORR}" in text
        assert f"  {CORRELATION_ID_HEADER}: {CORR}" in text

    @pytest.mark.parametrize("stored", ["Pembertonwhistle-Agatha", "MRN-55667788"])
    def test_refused_id_of_an_older_letter_is_never_printed(self, stored: str) -> None:
        """A dead letter from before the rule shows the id its replay carries, not the text."""
        old = entry(b"x").dead_letter
        old = old.model_copy(
            update={
                "correlation_id": stored,
                "headers": (
                    DeadLetterHeader(
                        key=CORRELATION_ID_HEADER,
                        value_b64=base64.b64encode(stored.encode()).decode(),
                    ),
                ),
            }
        )
        shown = DeadLetterEntry(0, 9, old)
        text = "\n".join(dlq.render_entry(shown)) + json.dumps(dlq.masked_entry(shown))
        assert stored not in text
        derived = derived_correlation_id("dead-letter", old.dead_letter_id)
        assert f"correlation_id: {derived}" in text
        assert f"  {CORRELATION_ID_HEADER}: {derived}" in text

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
        text = "\n".join(dlq.render_entry(entry(b"x", mark=mark)))
        assert f"state:          replayed by ops-a at {T0.isoformat()}" in text

    def test_listing_row_summarises(self) -> None:
        """A listing row has id, state, stage, code, attempts, last failure and source."""
        row = dlq.entry_row(entry(b"x"))
        assert row[1:5] == ("new", "validation", "EVENT_MALFORMED", 1)
        assert row[-1] == "radstream.images.arrived[2]@40"


class TestRefusalsWithoutBroker:
    def test_raw_is_refused_outside_development(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--raw needs RADSTREAM_ENVIRONMENT=development; production refuses before reading."""
        settings = NO_BROKER.model_copy(update={"environment": "production"})
        assert main(["dlq", "show", str(uuid.uuid4()), "--raw"], settings=settings) == 7
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "AUTHORIZATION_FAILED: --raw is refused in the production environment" in err


def test_value_bytes_are_base64_in_the_letter() -> None:
    """Sanity of the fixture: the dead letter stores the value as base64."""
    assert base64.b64decode(entry(b"abc").dead_letter.value_b64) == b"abc"


class TestOutcomes:
    """What replay and purge print per dead letter, and their failure when none was selected."""

    ROWS = [(uuid.UUID(int=7), "replayed", "radstream.images.arrived")]

    @pytest.mark.parametrize(
        ("verb", "detail"), [("replay", ("detail", "topic or reason")), ("purge", ("how", "how"))]
    )
    def test_json_names_each_detail(
        self, verb: str, detail: tuple[str, str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        dlq.emit_outcomes(verb, self.ROWS, detail, as_json=True)
        assert json.loads(capsys.readouterr().out) == [
            {
                "dead_letter_id": str(uuid.UUID(int=7)),
                "outcome": "replayed",
                detail[0]: "radstream.images.arrived",
            }
        ]

    def test_table_has_headers(self, capsys: pytest.CaptureFixture[str]) -> None:
        dlq.emit_outcomes("replay", self.ROWS, ("detail", "topic or reason"), as_json=False)
        header, row = capsys.readouterr().out.splitlines()
        assert header.split() == ["ID", "OUTCOME", "TOPIC", "OR", "REASON"]
        assert row.split() == [str(uuid.UUID(int=7)), "replayed", "radstream.images.arrived"]

    @pytest.mark.parametrize("verb", ["replay", "purge"])
    def test_nothing_selected_fails_after_printing(
        self, verb: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(CommandError) as caught:
            dlq.emit_outcomes(verb, [], ("how", "how"), as_json=True)
        assert json.loads(capsys.readouterr().out) == []
        assert caught.value.code is ErrorCode.RESOURCE_NOT_FOUND
        assert f"nothing to {verb}" in str(caught.value)
