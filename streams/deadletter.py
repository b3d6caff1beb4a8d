"""Dead letters: build them from a failed message, filter them, and restore them for replay.

A dead letter keeps the original key, value bytes and headers (base64) plus what went wrong:
stage, error code, a patient-data-free reason, attempts, first/last failure time and the source
topic/partition/offset. Exceptions that are not :class:`~schemas.errors.RadstreamError` become
``INTERNAL_ERROR`` with a generic reason naming only the exception type: their text may hold
anything (a file's content, a patient's name) and is never published.

It also plans what ``radstream dlq`` does: which dead letters a filter selects, which of them a
replay may republish (:func:`plan_replay`), how much of the topic a purge may really delete and
what it can only mark (:func:`plan_purge`), and the audit action each operation publishes
(:func:`dlq_action`). See docs/deadletters.md for the semantics.

Pure: no Kafka, no logging; the agent publishes what :func:`build_dead_letter` returns and the
CLI (streams/dlq.py) does the I/O these plans describe.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas.audit import ApiAction, ApiActionKind
from schemas.correlation import CorrelationId, with_correlation_header
from schemas.deadletter_marks import DeadLetterMark, DeadLetterMarkKind
from schemas.errors import ErrorCode, RadstreamError
from schemas.events import DeadLetter, DeadLetterHeader, Stage, utc_now

_MAX_REASON = 500

ReplayRecord = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]

REPLAY_OF_HEADER = "dlq_replay_of"
"""Header added to a replayed message: the id of the dead letter it was replayed from."""


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
    correlation_id: CorrelationId,
    event_id: uuid.UUID | str | None,
) -> DeadLetter:
    """The dead letter for a message ``stage`` could not process.

    The original headers are kept except the correlation header, which holds
    ``correlation_id`` (the id the stage used): a refused original, possibly a patient's name,
    is not kept in the dead letter either.
    """
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
        headers=tuple(
            DeadLetterHeader(key=k, value_b64=_b64(v))
            for k, v in with_correlation_header(headers, correlation_id)
        ),
        correlation_id=correlation_id,
        event_id=_as_uuid(event_id),
    )


def replay_record(dead_letter: DeadLetter) -> ReplayRecord:
    """(topic, key, value, headers) that republish the original message unchanged.

    Except its correlation header: the replay carries the dead letter's correlation id
    (:meth:`~schemas.events.DeadLetter.effective_correlation_id`), so the replayed work joins
    the same trace and a refused original kept by an older release is not republished.

    Raises:
        ValueError: the dead letter's base64 fields are corrupt.
    """
    try:
        key = None if dead_letter.key_b64 is None else _unb64(dead_letter.key_b64)
        value = _unb64(dead_letter.value_b64)
        headers = [(h.key, _unb64(h.value_b64)) for h in dead_letter.headers]
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("dead letter holds invalid base64") from exc
    headers = with_correlation_header(headers, dead_letter.effective_correlation_id())
    return dead_letter.source_topic, key, value, headers


# ------------------------------------------------------------------------- dlq tooling
@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A dead letter as read back from its topic: where it sits and the latest mark on it."""

    partition: int
    offset: int
    dead_letter: DeadLetter
    mark: DeadLetterMark | None = None

    @property
    def replayed(self) -> bool:
        """An operator replayed it (and did not purge it since)."""
        return self.mark is not None and self.mark.kind is DeadLetterMarkKind.REPLAYED

    @property
    def purged(self) -> bool:
        """An operator purged it: it is hidden, and may still be on the broker until deleted."""
        return self.mark is not None and self.mark.kind is DeadLetterMarkKind.PURGED

    @property
    def state(self) -> str:
        """``new``, ``replayed`` or ``purged``, for listings."""
        return "new" if self.mark is None else self.mark.kind.value


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; every given criterion must hold.

    The one bundle of dead-letter filters: the ``radstream dlq`` options build it, and the
    dlq reader, replay and purge take it. ``since`` is inclusive and ``until`` exclusive, both
    compared with the last failure time; both must be timezone-aware. A code or stage given as
    text must be one of the catalogue's.
    """

    ids: frozenset[uuid.UUID] = frozenset()
    code: ErrorCode | None = None
    stage: Stage | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for bound in (self.since, self.until):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("time filters must be timezone-aware")
        # Text from a caller becomes the enum, or a ValueError naming the unknown value.
        if self.code is not None:
            object.__setattr__(self, "code", ErrorCode(self.code))
        if self.stage is not None:
            object.__setattr__(self, "stage", Stage(self.stage))

    @property
    def selective(self) -> bool:
        """Whether any criterion is set (replay and purge refuse to act on everything)."""
        return bool(self.ids) or any(
            v is not None for v in (self.code, self.stage, self.since, self.until)
        )

    def matches(self, dead_letter: DeadLetter) -> bool:
        """Whether ``dead_letter`` is selected."""
        checks = (
            not self.ids or dead_letter.dead_letter_id in self.ids,
            self.code is None or dead_letter.error_code == self.code,
            self.stage is None or dead_letter.stage == self.stage,
            self.since is None or dead_letter.last_failure_at >= self.since,
            self.until is None or dead_letter.last_failure_at < self.until,
        )
        return all(checks)


def select(
    entries: Iterable[DeadLetterEntry], flt: DeadLetterFilter, *, include_purged: bool = False
) -> list[DeadLetterEntry]:
    """The entries ``flt`` selects, in topic order; purged ones only when asked for."""
    chosen = [e for e in entries if (include_purged or not e.purged) and flt.matches(e.dead_letter)]
    return sorted(chosen, key=lambda e: (e.partition, e.offset))


def replay_message(entry: DeadLetterEntry) -> ReplayRecord:
    """The original message to republish, tagged with the dead letter it is replayed from.

    Raises:
        ValueError: the dead letter's base64 fields are corrupt.
    """
    topic, key, value, headers = replay_record(entry.dead_letter)
    headers = [(k, v) for k, v in headers if k != REPLAY_OF_HEADER]
    headers.append((REPLAY_OF_HEADER, str(entry.dead_letter.dead_letter_id).encode()))
    return topic, key, value, headers


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay will republish and what it refuses, with the reason."""

    to_replay: list[tuple[DeadLetterEntry, ReplayRecord]] = field(default_factory=list)
    refused: list[tuple[DeadLetterEntry, str]] = field(default_factory=list)


def plan_replay(
    entries: Iterable[DeadLetterEntry],
    flt: DeadLetterFilter,
    *,
    allowed_topics: Collection[str],
    force: bool = False,
) -> ReplayPlan:
    """Decide which selected dead letters may be replayed.

    A dead letter already replayed is refused unless ``force``; one whose source topic is not
    one of this deployment's topics is always refused (a dead letter must not be able to write
    anywhere else), and so is one whose stored bytes are corrupt.
    """
    plan = ReplayPlan()
    for entry in select(entries, flt):
        letter = entry.dead_letter
        if letter.source_topic not in allowed_topics:
            plan.refused.append((entry, "source topic is not one of this deployment's topics"))
        elif entry.replayed and not force:
            count = entry.mark.replay_count if entry.mark is not None else 0
            plan.refused.append((entry, f"already replayed {count} time(s); use --force"))
        else:
            try:
                plan.to_replay.append((entry, replay_message(entry)))
            except ValueError:
                plan.refused.append((entry, "dead letter holds invalid base64"))
    return plan


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """What a purge does.

    Attributes:
        purged: the dead letters this purge removes from view (newly selected ones).
        delete_before: per dead-letter partition, the offset below which every record is
            deleted from the broker (only partitions where that deletes something).
        deleted: every entry below those offsets (this purge's and earlier purged ones).
        marked_only: purged entries that stay on the broker, hidden by their mark, until the
            topic's retention expires them or a later purge can delete up to them.
    """

    purged: list[DeadLetterEntry]
    delete_before: dict[int, int]
    deleted: list[DeadLetterEntry]
    marked_only: list[DeadLetterEntry]


def plan_purge(
    entries: Iterable[DeadLetterEntry],
    flt: DeadLetterFilter,
    *,
    unreadable: Iterable[tuple[int, int]] = (),
    low_watermarks: dict[int, int] | None = None,
) -> PurgePlan:
    """Plan a purge: delete the longest purgeable prefix of each partition, mark the rest.

    Kafka deletes records only as a prefix (everything before an offset). A prefix may go when
    every record in it is selected by ``flt`` or was purged before; the first record that is
    neither (or that could not even be decoded, see ``unreadable``) ends it. Selected dead
    letters after that point can only be marked purged.

    Args:
        entries: every decodable dead letter on the topic, purged ones included.
        flt: the selection.
        unreadable: (partition, offset) of records that are not dead letters at all.
        low_watermarks: each partition's first offset on the broker; a deletion that would not
            move it is left out of the plan.
    """
    all_entries = sorted(entries, key=lambda e: (e.partition, e.offset))
    purged = select(all_entries, flt)
    chosen = {(e.partition, e.offset) for e in purged}
    blockers: dict[int, int] = {}
    for partition, offset in unreadable:
        blockers[partition] = min(offset, blockers.get(partition, offset))
    delete_before: dict[int, int] = {}
    for entry in all_entries:
        p = entry.partition
        if p in blockers and entry.offset >= blockers[p]:
            continue
        if entry.purged or (p, entry.offset) in chosen:
            delete_before[p] = entry.offset + 1
        else:
            blockers[p] = entry.offset
    floors = low_watermarks or {}
    delete_before = {p: o for p, o in delete_before.items() if o > floors.get(p, 0)}
    deleted = [e for e in all_entries if e.offset < delete_before.get(e.partition, -1)]
    deleted_keys = {(e.partition, e.offset) for e in deleted}
    marked_only = [e for e in purged if (e.partition, e.offset) not in deleted_keys]
    return PurgePlan(purged, delete_before, deleted, marked_only)


def mark_for(
    entry: DeadLetterEntry, kind: DeadLetterMarkKind, actor: str, *, at: datetime | None = None
) -> DeadLetterMark:
    """The mark recording that ``actor`` replayed or purged ``entry``."""
    previous = entry.mark.replay_count if entry.mark is not None else 0
    return DeadLetterMark(
        dead_letter_id=entry.dead_letter.dead_letter_id,
        kind=kind,
        marked_at=at or utc_now(),
        actor=actor,
        replay_count=previous + (1 if kind is DeadLetterMarkKind.REPLAYED else 0),
        deadletter_partition=entry.partition,
        deadletter_offset=entry.offset,
    )


DLQ_ROUTES = {
    ApiActionKind.DLQ_REPLAY: "cli/dlq/replay",
    ApiActionKind.DLQ_PURGE: "cli/dlq/purge",
}


def dlq_action(
    kind: ApiActionKind,
    entry: DeadLetterEntry,
    *,
    actor: str,
    refused: bool = False,
    at: datetime | None = None,
) -> ApiAction:
    """The audit action for one dead letter replayed or purged (or refused) by ``actor``.

    It carries the dead letter's event id and correlation id, so the audit trail joins the
    replay to the message's whole history. A refusal is recorded as a 409 failure.
    """
    letter = entry.dead_letter
    return ApiAction(
        action=kind,
        occurred_at=at or utc_now(),
        actor_id=actor,
        roles=("operator",),
        outcome="failure" if refused else "success",
        http_status=409 if refused else 200,
        route=DLQ_ROUTES[kind],
        event_id=letter.event_id,
        correlation_id=letter.effective_correlation_id(),
        error_code=ErrorCode.DEAD_LETTER_ALREADY_REPLAYED if refused else None,
    )
