"""Dead letters: build them from a failed message, filter them, and restore them for replay.

A dead letter keeps the original key, value bytes and headers (base64) plus what went wrong:
stage, error code, a patient-data-free reason, attempts, first/last failure time and the source
topic/partition/offset. Exceptions that are not :class:`~schemas.errors.RadstreamError` become
``INTERNAL_ERROR`` with a generic reason naming only the exception type: their text may hold
anything (a file's content, a patient's name) and is never published.

Pure: no Kafka, no logging; the agent publishes what :func:`build_dead_letter` returns and the
CLI republishes what :func:`replay_record` returns.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime

from schemas.errors import ErrorCode, RadstreamError
from schemas.events import CORRELATION_ID_HEADER, DeadLetter, DeadLetterHeader, Stage

_MAX_REASON = 500
_MAX_CORRELATION_ID = 64

ReplayRecord = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # a malformed event id is no reason to lose the dead letter


def error_code_and_reason(error: BaseException) -> tuple[ErrorCode, str]:
    """The code and publishable reason of ``error`` (generic for unexpected exceptions)."""
    if isinstance(error, RadstreamError):
        return error.code, error.reason[:_MAX_REASON]
    return (
        ErrorCode.INTERNAL_ERROR,
        f"unexpected {type(error).__name__}; details are in the service log only",
    )


def build_dead_letter(
    *,
    stage: Stage,
    error: RadstreamError | Exception,
    attempts: int,
    first_failure_at: datetime,
    last_failure_at: datetime,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    correlation_id: str | None,
    event_id: uuid.UUID | str | None,
) -> DeadLetter:
    """The dead letter for a message ``stage`` could not process."""
    code, reason = error_code_and_reason(error)
    return DeadLetter(
        stage=stage,
        error_code=code,
        reason=reason,
        attempts=max(attempts, 1),
        first_failure_at=first_failure_at,
        last_failure_at=last_failure_at,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key_b64=None if key is None else _b64(key),
        value_b64=_b64(value),
        headers=tuple(DeadLetterHeader(key=k, value_b64=_b64(v)) for k, v in headers),
        correlation_id=None if correlation_id is None else correlation_id[:_MAX_CORRELATION_ID],
        event_id=_as_uuid(event_id),
    )


def replay_record(dead_letter: DeadLetter) -> ReplayRecord:
    """(topic, key, value, headers) that republish the original message unchanged.

    The original correlation id travels along: when the original headers lacked it, the dead
    letter's correlation id is added, so the replayed work joins the same trace.

    Raises:
        ValueError: the dead letter's base64 fields are corrupt.
    """
    try:
        key = None if dead_letter.key_b64 is None else _unb64(dead_letter.key_b64)
        value = _unb64(dead_letter.value_b64)
        headers = [(h.key, _unb64(h.value_b64)) for h in dead_letter.headers]
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("dead letter holds invalid base64") from exc
    if dead_letter.correlation_id is not None and not any(
        k == CORRELATION_ID_HEADER for k, _ in headers
    ):
        headers.append((CORRELATION_ID_HEADER, dead_letter.correlation_id.encode()))
    return dead_letter.source_topic, key, value, headers


def matches(
    dead_letter: DeadLetter,
    code: ErrorCode | str | None = None,
    stage: Stage | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> bool:
    """Whether ``dead_letter`` passes the CLI's filters (all given filters must hold).

    ``since`` is inclusive and ``until`` exclusive, both compared with the last failure time;
    they must be timezone-aware.
    """
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise ValueError("time filters must be timezone-aware")
    checks = (
        code is None or dead_letter.error_code == ErrorCode(code),
        stage is None or dead_letter.stage == Stage(stage),
        since is None or dead_letter.last_failure_at >= since,
        until is None or dead_letter.last_failure_at < until,
    )
    return all(checks)
