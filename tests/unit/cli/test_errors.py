"""One line per failure: the code, what happened, what to do; and the exit status."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from cli.errors import EXIT_CODE_MEANINGS, CommandError, ExitCode, exit_code_for, failure_for
from schemas.errors import ErrorCode, IntegrityError, TransientError, error_for
from schemas.settings import load_settings


class TestExitCodes:
    @pytest.mark.parametrize("code", list(ErrorCode))
    def test_every_code_has_a_documented_exit_status(self, code: ErrorCode) -> None:
        """Whatever a command fails with, its exit status is one the help documents."""
        assert exit_code_for(code) in EXIT_CODE_MEANINGS

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            (ErrorCode.CHECK_FAILED, ExitCode.CHECK_FAILED),
            (ErrorCode.REQUEST_INVALID, ExitCode.USAGE),
            (ErrorCode.SETTINGS_INVALID, ExitCode.SETTINGS),
            (ErrorCode.RESOURCE_NOT_FOUND, ExitCode.NOT_FOUND),
            (ErrorCode.BROKER_UNAVAILABLE, ExitCode.UNAVAILABLE),
            (ErrorCode.DATABASE_UNAVAILABLE, ExitCode.UNAVAILABLE),
            (ErrorCode.TIMEOUT, ExitCode.UNAVAILABLE),
            (ErrorCode.AUDIT_CHAIN_BROKEN, ExitCode.INTEGRITY),
            (ErrorCode.AUDIT_CHECKPOINT_INVALID, ExitCode.INTEGRITY),
            (ErrorCode.DEAD_LETTER_ALREADY_REPLAYED, ExitCode.REFUSED),
            (ErrorCode.BROKER_REQUEST_REFUSED, ExitCode.REFUSED),
            (ErrorCode.AUTHORIZATION_FAILED, ExitCode.REFUSED),
            (ErrorCode.INTERNAL_ERROR, ExitCode.INTERNAL),
        ],
    )
    def test_documented_statuses(self, code: ErrorCode, status: ExitCode) -> None:
        """The README's exit-code table, per kind of failure."""
        assert exit_code_for(code) is status


class TestFailureFor:
    def test_our_error_keeps_its_code_and_reason(self) -> None:
        """A RadstreamError is reported with its own code and reason."""
        failure = failure_for(error_for(ErrorCode.AUDIT_CHAIN_BROKEN, "chain 0 breaks at 7"))
        assert (failure.code, failure.reason, failure.exit_code) == (
            ErrorCode.AUDIT_CHAIN_BROKEN,
            "chain 0 breaks at 7",
            ExitCode.INTEGRITY,
        )
        assert "docs/audit.md" in failure.advice

    def test_an_unknown_model_points_at_the_installed_ones(self) -> None:
        """`models show nosuch` (and every model command) says where the names are."""
        failure = failure_for(error_for(ErrorCode.MODEL_NOT_FOUND, "model 'x' is not installed"))
        assert failure.exit_code is ExitCode.NOT_FOUND
        assert "'radstream models list'" in failure.advice

    def test_command_advice_wins(self) -> None:
        """A command's own advice replaces the code's general one."""
        error = CommandError(ErrorCode.RESOURCE_NOT_FOUND, "no such thing", advice="Look again")
        assert failure_for(error).advice == "Look again"

    def test_our_error_behind_a_wrapper_is_found(self) -> None:
        """A stage failure wrapping a TransientError is reported as the TransientError."""
        outer = RuntimeError("a worker stage failed")
        outer.__cause__ = TransientError(
            ErrorCode.DATABASE_UNAVAILABLE, "PostgreSQL is unavailable"
        )
        assert failure_for(outer).code is ErrorCode.DATABASE_UNAVAILABLE

    def test_timeout_is_a_timeout(self) -> None:
        """A bare TimeoutError is TIMEOUT (exit 5)."""
        assert failure_for(TimeoutError()).code is ErrorCode.TIMEOUT

    def test_a_refusing_broker_is_refused_not_unavailable(self) -> None:
        """BROKER_REQUEST_REFUSED is transient by category, but retrying cannot help: exit 7."""
        failure = failure_for(TransientError(ErrorCode.BROKER_REQUEST_REFUSED))
        assert failure.exit_code is ExitCode.REFUSED
        assert "ACLs" in failure.advice

    def test_anything_else_is_internal_without_its_message(self) -> None:
        """An unexpected error names its type only: its message may quote patient data."""
        failure = failure_for(ValueError("PatientName=Doe^John"))
        assert (failure.code, failure.reason) == (
            ErrorCode.INTERNAL_ERROR,
            "unexpected ValueError",
        )

    def test_advice_names_where_the_services_are_not_the_secret(self) -> None:
        """The advice says host and port of Kafka and PostgreSQL, never the database password."""
        settings = load_settings(
            kafka_bootstrap="kafka-1:9093",
            database_url=SecretStr("postgresql://radstream:pw1/x@db-host:6432/radstream"),
        )
        broker = failure_for(TransientError(ErrorCode.BROKER_UNAVAILABLE), settings)
        database = failure_for(TransientError(ErrorCode.DATABASE_UNAVAILABLE), settings)
        assert "kafka-1:9093 (RADSTREAM_KAFKA_BOOTSTRAP)" in broker.advice
        assert "db-host:6432 (RADSTREAM_DATABASE_URL)" in database.advice
        assert "pw1" not in database.line("radstream db upgrade")

    def test_an_unparsable_database_url_is_not_quoted(self) -> None:
        """A URL the parser refuses is named "the configured address", never printed."""
        settings = load_settings(database_url=SecretStr("postgresql://u:pw@[db-Zq81/x"))
        failure = failure_for(TransientError(ErrorCode.DATABASE_UNAVAILABLE), settings)
        assert "the configured address (RADSTREAM_DATABASE_URL)" in failure.advice
        assert "Zq81" not in failure.advice


class TestLine:
    def test_one_line_with_code_reason_and_advice(self) -> None:
        """``<command>: <CODE>: <reason>. <advice>.``"""
        line = failure_for(IntegrityError(ErrorCode.AUDIT_CHAIN_BROKEN, "chain 0 breaks")).line(
            "radstream audit verify"
        )
        assert line.startswith("radstream audit verify: AUDIT_CHAIN_BROKEN: chain 0 breaks. ")
        assert line.endswith(".")

    def test_control_characters_cannot_add_lines(self) -> None:
        """A reason with a newline or an escape sequence still prints as one line."""
        line = failure_for(
            CommandError(ErrorCode.RESOURCE_NOT_FOUND, "no dead letter a\nb\x1b[2J")
        ).line("radstream dlq show")
        assert "\n" not in line
        assert "\x1b" not in line
