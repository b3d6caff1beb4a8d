"""How a radstream command fails: one line on stderr and a documented exit status.

The line reads ``radstream <command>: <ERROR_CODE>: <what happened>. <what to do>`` — the code is
one of the catalogue's (:mod:`schemas.errors`), the text never holds patient data, a secret or a
traceback (``--debug`` logs the traceback, masked, for a bug report). Commands raise
:class:`~schemas.errors.RadstreamError` (or :class:`CommandError`, which adds the advice);
:func:`failure_for` turns whatever reached the top into a :class:`Failure`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final
from urllib.parse import urlsplit

from observability.logging import escape_control_characters
from schemas.errors import (
    ErrorCategory,
    ErrorCode,
    RadstreamError,
    TransientError,
    error_for,
    spec_for,
)
from schemas.settings import Settings, mask_url


class ExitCode(IntEnum):
    """The exit statuses of every ``radstream`` command (README, "Exit codes")."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    SETTINGS = 3
    NOT_FOUND = 4
    UNAVAILABLE = 5
    INTEGRITY = 6
    REFUSED = 7
    INTERNAL = 70
    INTERRUPTED = 130


EXIT_CODE_MEANINGS: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "done",
    ExitCode.CHECK_FAILED: "a check found a problem, listed on stdout",
    ExitCode.USAGE: "the command line is wrong (command, option or value)",
    ExitCode.SETTINGS: "a RADSTREAM_* setting is invalid or refused",
    ExitCode.NOT_FOUND: "the event, dead letter, key, migration or consumer group does not exist",
    ExitCode.UNAVAILABLE: "Kafka or PostgreSQL did not answer (in time): retry later",
    ExitCode.INTEGRITY: "the audit trail does not verify",
    ExitCode.REFUSED: "refused: not allowed here, or done before",
    ExitCode.INTERNAL: "a bug: run again with --debug and report the log",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}

# Codes whose exit status is not their category's.
_EXIT_BY_CODE: Final = {
    # Transient by category, but retrying cannot help: the broker said no.
    ErrorCode.BROKER_REQUEST_REFUSED: ExitCode.REFUSED,
    ErrorCode.CHECK_FAILED: ExitCode.CHECK_FAILED,
    ErrorCode.REQUEST_INVALID: ExitCode.USAGE,
    ErrorCode.SETTINGS_INVALID: ExitCode.SETTINGS,
    ErrorCode.INTERNAL_ERROR: ExitCode.INTERNAL,
    # A model version `radstream models add|promote` refused: the operator's files, not a bug.
    ErrorCode.MODEL_MANIFEST_MISMATCH: ExitCode.REFUSED,
    ErrorCode.MODEL_CHECKSUM_MISMATCH: ExitCode.REFUSED,
    ErrorCode.MODEL_LOAD_FAILED: ExitCode.REFUSED,
}
_EXIT_BY_CATEGORY: Final = {
    ErrorCategory.INPUT: ExitCode.USAGE,
    ErrorCategory.NOT_FOUND: ExitCode.NOT_FOUND,
    ErrorCategory.TRANSIENT: ExitCode.UNAVAILABLE,
    ErrorCategory.INTEGRITY: ExitCode.INTEGRITY,
    ErrorCategory.AUTHENTICATION: ExitCode.REFUSED,
    ErrorCategory.AUTHORIZATION: ExitCode.REFUSED,
    ErrorCategory.CONFLICT: ExitCode.REFUSED,
    ErrorCategory.RATE_LIMIT: ExitCode.REFUSED,
    ErrorCategory.INFERENCE: ExitCode.INTERNAL,
}
# What to do, when the command that failed did not say. ``{kafka}``/``{database}`` name where
# the settings point (host and port only: the database URL is a secret).
_ADVICE: Final = {
    ErrorCode.BROKER_UNAVAILABLE: "Check that Kafka runs at {kafka} (RADSTREAM_KAFKA_BOOTSTRAP), "
    "then run the command again",
    ErrorCode.DATABASE_UNAVAILABLE: "Check that PostgreSQL runs at {database} "
    "(RADSTREAM_DATABASE_URL), then run the command again",
    ErrorCode.TIMEOUT: "The service answered too slowly; check its load, then run the command "
    "again",
    ErrorCode.RETRIES_EXHAUSTED: "The service kept failing; check its log, then run the "
    "command again",
    ErrorCode.BROKER_REQUEST_REFUSED: "Check the broker's ACLs for this client, and that no "
    "other process writes with the same transactional id",
    ErrorCode.AUDIT_CHAIN_BROKEN: "Keep the evidence (do not restart or reset anything) and "
    "follow docs/audit.md, 'When verification fails'",
    ErrorCode.AUDIT_CHECKPOINT_INVALID: "Keep the evidence (do not restart or reset anything) "
    "and follow docs/audit.md, 'When verification fails'",
    ErrorCode.MODEL_NOT_FOUND: "'radstream models list' shows the installed models and versions",
    ErrorCode.SETTINGS_INVALID: "Fix the variable named (README, 'Settings'); "
    "'radstream config' prints the settings in effect",
    ErrorCode.INTERNAL_ERROR: "This is a bug: run the command again with --debug and report "
    "the log (it is masked)",
}
_DEFAULT_ADVICE: Final = "See the README, 'Error codes' and 'Exit codes'"


class CommandError(RadstreamError):
    """A failure a command reports itself, with the advice for the operator.

    Args:
        code: the catalogue code (it decides the exit status).
        reason: what happened, free of patient data and secrets.
        advice: what to do about it; without it, the code's general advice is given.
    """

    def __init__(self, code: ErrorCode, reason: str, *, advice: str | None = None) -> None:
        super().__init__(code, reason)
        self.advice = advice


@dataclass(frozen=True, slots=True)
class Failure:
    """What the one line says, and the exit status."""

    code: ErrorCode
    reason: str
    advice: str
    exit_code: ExitCode

    def line(self, command: str) -> str:
        """The line printed on stderr (control characters escaped, so it stays one line)."""
        text = f"{command}: {self.code.value}: {_sentence(self.reason)} {_sentence(self.advice)}"
        return escape_control_characters(" ".join(text.split()))


def exit_code_for(code: ErrorCode) -> ExitCode:
    """The exit status a failure with ``code`` ends the command with."""
    return _EXIT_BY_CODE.get(code) or _EXIT_BY_CATEGORY[spec_for(code).category]


def failure_for(error: BaseException, settings: Settings | None = None) -> Failure:
    """The one-line failure for ``error``; ``settings`` (when loaded) name the services."""
    known = _radstream_error(error)
    advice = known.advice if isinstance(known, CommandError) else None
    if advice is None:
        advice = _ADVICE.get(known.code, _DEFAULT_ADVICE).format(**_where(settings))
    return Failure(known.code, known.reason, advice, exit_code_for(known.code))


def _radstream_error(error: BaseException) -> RadstreamError:
    """Our error behind ``error``: itself, its cause or context, or a translation of it."""
    for item in _chain(error):
        if isinstance(item, RadstreamError):
            return item
    if isinstance(error, TimeoutError):
        return TransientError(ErrorCode.TIMEOUT, "the operation timed out")
    # The layers translate library errors where they enter (streams/kafka/errors.py, sinks/
    # database.py); anything else is a bug. The type's name only: its message may quote data.
    return error_for(ErrorCode.INTERNAL_ERROR, f"unexpected {type(error).__name__}")


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then its causes and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _where(settings: Settings | None) -> dict[str, str]:
    """The broker and database addresses for the advice (never the URL: it holds secrets)."""
    if settings is None:
        return {"kafka": "the configured address", "database": "the configured address"}
    # Parsed from the masked URL: a password with an unescaped "/" would end the host early.
    try:
        parts = urlsplit(mask_url(settings.database_url.get_secret_value()))
        database = f"{parts.hostname}:{parts.port or 5432}" if parts.hostname else "a local socket"
    except ValueError:
        database = "the configured address"
    return {"kafka": settings.kafka_bootstrap, "database": database}


def _sentence(text: str) -> str:
    """``text`` ending in a full stop (the reason and the advice are two sentences)."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
