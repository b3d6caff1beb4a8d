"""The correlation id: its one format, how radstream makes one, and which supplied ids it keeps.

A correlation id joins every log line, Kafka message, table row and audit record of one piece of
work. It travels as the ``correlation_id`` Kafka header and the ``X-Correlation-ID`` HTTP header,
and it is logged, published and stored *unmasked* — so it must never be able to carry text.
This module is its only owner (as structlog's ``contextvars.py`` owns request context): the API,
the stages, logging, dead letters, the results sink and the audit trail all call it, and a test
(``tests/unit/test_correlation_ownership.py``) fails when another module defines a pattern or a
generator of its own.

The rule:

* **radstream generates correlation ids**: 32 lower-case hex digits (a random UUID's hex form).
* A **supplied** id — an HTTP header, a Kafka header of a consumed message, a dead letter's id,
  a replay — is accepted only when it is a UUID (hyphenated or not) or a hex digest of 32 or 64
  digits, and is then kept in its canonical form: lower case, without hyphens. Any case is
  accepted on the way in, so ``3F2504E0-4F89-11D3-9A0C-0305E82C3301`` becomes
  ``3f2504e04f8911d39a0c0305e82c3301``.
* A value made of decimal digits only is refused even at those lengths: it has the shape of a
  zero-padded record number, and a random id is all digits about once in three million draws (the
  ids radstream generates never are, see :func:`_id_of`).
* **Anything else is replaced**, and the original is neither stored nor logged nor hashed: the
  replacement carries no information about it. A plain SHA-256 of an eight-digit MRN is undone
  by hashing all 10⁸ candidates (seconds on a laptop), and even a keyed hash would only let the
  key holder join records by a value nobody should be joining on. The replacement is
  *deterministic* where several readers of one message must agree on it: it is derived from the
  message's topic, partition and offset (:func:`derived_correlation_id`), so every redelivery,
  the stage that processes an arrival and the audit agent that records it derive the same id.
  Where nothing must share it (an HTTP request) it is fresh (:func:`new_correlation_id`).

Why these lengths: 32 hex digits is a UUID, a W3C ``traceparent`` trace id and an MD5-sized
digest; 64 is a SHA-256 digest. Shorter hex strings (a 16-digit span id) are the length of
national identifiers and card numbers written in digits, and longer ones do not fit the 64-char
columns and headers downstream.

Pure: the standard library only; importable from every layer, the pure cores included.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Final, NewType

CorrelationId = NewType("CorrelationId", str)
"""A correlation id in canonical form; only this module's functions return one."""

CORRELATION_ID_HEADER: Final = "correlation_id"
"""The Kafka header carrying the correlation id on every pipeline topic."""

CORRELATION_HTTP_HEADER: Final = "X-Correlation-ID"
"""The HTTP request and response header carrying the correlation id."""

MAX_CORRELATION_ID_LENGTH: Final = 64
"""The longest canonical id (a SHA-256 digest); columns and contracts allow this much."""

SUPPLIED_PATTERN: Final = (
    r"^(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{64})$"
)
"""What a supplied id must look like (the contracts publish it); all-digit values are refused."""

_SUPPLIED_RE = re.compile(SUPPLIED_PATTERN)
# Derivations stay stable across releases: the namespace and the seed format are part of the
# format (ids derived before this module existed used the same ones, so redeliveries spanning an
# upgrade still share their id).
_NAMESPACE: Final = uuid.UUID("5f0c8a56-6c1e-4c8e-9a39-2b7f3d1e0c42")


def _id_of(value: uuid.UUID) -> CorrelationId:
    """The canonical id of a UUID radstream made; never all digits, so never refused later."""
    text = value.hex
    if text.isdigit():
        text = "f" + text[1:]
    return CorrelationId(text)


def accept_correlation_id(value: str | bytes | None) -> CorrelationId | None:
    """The canonical form of a supplied id when the rule accepts it, else None.

    Args:
        value: a header value as received (text or raw bytes); bytes that are not ASCII are
            refused like any other malformed value.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if value is None or _SUPPLIED_RE.fullmatch(value) is None:
        return None
    canonical = value.replace("-", "").lower()
    return None if canonical.isdigit() else CorrelationId(canonical)


def new_correlation_id() -> CorrelationId:
    """A fresh random id, for work nothing else has to agree on (one HTTP request)."""
    return _id_of(uuid.uuid4())


def derived_correlation_id(*parts: str | int | uuid.UUID) -> CorrelationId:
    """The id every reader derives alike from the same ``parts``.

    A consumed message uses ``(topic, partition, offset)``: its redeliveries, its stage and the
    audit agent then agree on the id that replaces a missing or refused header. Other
    replacements name what they stand for first (``("dead-letter", dead_letter_id)``).
    """
    return _id_of(uuid.uuid5(_NAMESPACE, ":".join(str(part) for part in parts)))


def correlation_id_from_headers(
    headers: Iterable[tuple[str, bytes]] | None,
) -> CorrelationId | None:
    """The accepted id of a message's first ``correlation_id`` header, or None."""
    for key, value in headers or ():
        if key == CORRELATION_ID_HEADER:
            return accept_correlation_id(value)
    return None


def with_correlation_header(
    headers: Iterable[tuple[str, bytes]], correlation_id: CorrelationId
) -> list[tuple[str, bytes]]:
    """``headers`` with exactly one ``correlation_id`` header, holding ``correlation_id``.

    The first correlation header is replaced in place (appended when there is none) and any
    further one dropped. Used wherever headers that came from outside are kept (dead letters,
    replays), so a refused original never travels on beside the id that replaced it.
    """
    header = (CORRELATION_ID_HEADER, correlation_id.encode("ascii"))
    result: list[tuple[str, bytes]] = []
    placed = False
    for key, value in headers:
        if key != CORRELATION_ID_HEADER:
            result.append((key, value))
        elif not placed:
            result.append(header)
            placed = True
    if not placed:
        result.append(header)
    return result
