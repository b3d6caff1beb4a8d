"""The dead-letter tooling behind ``radstream dlq``: list, show, replay and purge, on Kafka.

The pure decisions (which dead letters a filter selects, what a replay may republish, how far a
purge may delete) live in :mod:`streams.deadletter`; this module reads the topics and performs
what those plans say, through the Kafka layer (:mod:`streams.kafka`).

State that must survive restarts ("this dead letter was replayed", "this one was purged") is
kept on a compacted side topic, ``<prefix>deadletter.marks``, one :class:`DeadLetterMark` per
dead letter keyed by its id (see docs/deadletters.md). Every replay and purge publishes one
:class:`~schemas.audit.ApiAction` per dead letter to ``api.actions``, which the audit agent
chains into the audit trail.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError

from schemas.audit import ApiActionKind
from schemas.deadletter_marks import DeadLetterMark, DeadLetterMarkKind
from schemas.events import DeadLetter
from schemas.settings import Settings
from streams.audit.io.actions import action_message
from streams.deadletter import (
    DeadLetterEntry,
    DeadLetterFilter,
    dlq_action,
    mark_for,
    plan_purge,
    plan_replay,
    select,
)
from streams.kafka import (
    KafkaClientConfig,
    KafkaPublisher,
    Outgoing,
    RawMessage,
    build_admin,
    ensure_topics,
    read_topic,
)
from streams.topics import TopicKey, TopicNames

CLIENT_ID = "radstream-dlq"
_ACTOR_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")


def client_config(settings: Settings) -> KafkaClientConfig:
    """The Kafka connection of the dead-letter tools (client id ``radstream-dlq``)."""
    return KafkaClientConfig.from_settings(settings, client_id=CLIENT_ID)


def marks_topic(topics: TopicNames) -> str:
    """The full name of the dead-letter marks topic under ``topics``' prefix."""
    return topics.deadletter_marks


@dataclass(frozen=True, slots=True)
class DeadLetterSnapshot:
    """Everything on the dead-letter topic right now, with the marks applied."""

    entries: list[DeadLetterEntry]
    unreadable: list[tuple[int, int]] = field(default_factory=list)
    low_watermarks: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay republished and what it refused (with the reason)."""

    replayed: list[DeadLetterEntry]
    refused: list[tuple[DeadLetterEntry, str]]
    dry_run: bool


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed from view, and how much of it left the broker for good."""

    purged: list[DeadLetterEntry]
    deleted: list[DeadLetterEntry]
    marked_only: list[DeadLetterEntry]
    delete_before: dict[int, int]
    dry_run: bool


def check_actor(actor: str) -> str:
    """``actor`` if it is a pseudonymous id the audit trail accepts.

    Raises:
        ValueError: it is empty, too long or holds characters an id never has.
    """
    if not _ACTOR_RE.fullmatch(actor):
        raise ValueError("actor must be a pseudonymous id: 1-64 of A-Z a-z 0-9 . _ @ : -")
    return actor


# ----------------------------------------------------------------------------- reading
async def read_marks(
    kafka: KafkaClientConfig, topics: TopicNames
) -> dict[uuid.UUID, DeadLetterMark]:
    """The latest mark of every dead letter (tombstones remove; junk values are ignored)."""
    content = await read_topic(kafka, marks_topic(topics))
    marks: dict[uuid.UUID, DeadLetterMark] = {}
    for record in content.all_records():
        if record.value is None:
            # A tombstone with a junk key removes nothing.
            with contextlib.suppress(AttributeError, ValueError):
                marks.pop(uuid.UUID(record.key.decode()), None)
            continue
        try:
            mark = DeadLetterMark.model_validate_json(record.value)
        except ValidationError:
            continue  # not ours: a stray write to the marks topic must not break the tooling
        marks[mark.dead_letter_id] = mark
    return marks


async def read_snapshot(kafka: KafkaClientConfig, topics: TopicNames) -> DeadLetterSnapshot:
    """The whole dead-letter topic with marks applied; undecodable records are listed apart."""
    content = await read_topic(kafka, topics.deadletter)
    marks = await read_marks(kafka, topics)
    entries: list[DeadLetterEntry] = []
    unreadable: list[tuple[int, int]] = []
    for record in content.all_records():
        try:
            letter = DeadLetter.model_validate_json(record.value or b"")
        except ValidationError:
            unreadable.append((record.partition, record.offset))
            continue
        entries.append(
            DeadLetterEntry(
                record.partition, record.offset, letter, marks.get(letter.dead_letter_id)
            )
        )
    entries.sort(key=lambda e: (e.partition, e.offset))
    return DeadLetterSnapshot(entries, sorted(unreadable), dict(content.starts))


async def _selected_snapshot(
    kafka: KafkaClientConfig,
    topics: TopicNames,
    selection: DeadLetterFilter,
    actor: str,
    action: str,
) -> DeadLetterSnapshot:
    """The dead letters as they are now, once ``actor`` and the selection were checked.

    Raises:
        ValueError: ``actor`` is not a pseudonymous id, or nothing is selected (an ``action``
            on every dead letter is never implied).
    """
    check_actor(actor)
    if not selection.selective:
        raise ValueError(f"{action} needs --id or at least one filter")
    return await read_snapshot(kafka, topics)


async def waiting_count(kafka: KafkaClientConfig, topics: TopicNames) -> int:
    """Dead letters waiting for an operator: neither replayed nor purged (unreadable included)."""
    snapshot = await read_snapshot(kafka, topics)
    return sum(1 for entry in snapshot.entries if entry.mark is None) + len(snapshot.unreadable)


async def list_dead_letters(
    kafka: KafkaClientConfig,
    topics: TopicNames,
    selection: DeadLetterFilter,
    *,
    limit: int | None = None,
    include_purged: bool = False,
) -> list[DeadLetterEntry]:
    """The dead letters ``selection`` selects, in topic order (purged ones hidden by default)."""
    snapshot = await read_snapshot(kafka, topics)
    chosen = select(snapshot.entries, selection, include_purged=include_purged)
    return chosen if limit is None else chosen[:limit]


async def get_dead_letter(
    kafka: KafkaClientConfig, topics: TopicNames, dead_letter_id: uuid.UUID
) -> DeadLetterEntry | None:
    """One dead letter by id (purged ones included, so ``show`` can say so), or None."""
    selection = DeadLetterFilter(ids=frozenset({dead_letter_id}))
    found = await list_dead_letters(kafka, topics, selection, include_purged=True)
    return found[0] if found else None


# ----------------------------------------------------------------------------- writing
def _mark(topics: TopicNames, mark: DeadLetterMark) -> RawMessage:
    """The marks-topic message for ``mark``."""
    return RawMessage(marks_topic(topics), mark.message_key(), mark.model_dump_json().encode())


def _tombstone(topics: TopicNames, entry: DeadLetterEntry) -> RawMessage:
    """The marks-topic tombstone removing ``entry``'s mark."""
    key = str(entry.dead_letter.dead_letter_id).encode()
    return RawMessage(marks_topic(topics), key, None)


def _audit(
    kind: ApiActionKind, entry: DeadLetterEntry, actor: str, *, refused: bool = False
) -> Outgoing:
    """The ``api.actions`` message auditing one dead letter's replay or purge."""
    return action_message(dlq_action(kind, entry, actor=actor, refused=refused))


async def _ensure_marks_topic(kafka: KafkaClientConfig, topics: TopicNames) -> None:
    """Create the compacted marks topic when it is missing (idempotent)."""
    await ensure_topics(kafka, topics.prefix, keys=(TopicKey.DEADLETTER_MARKS,))


async def replay(
    kafka: KafkaClientConfig,
    topics: TopicNames,
    selection: DeadLetterFilter,
    *,
    actor: str,
    force: bool = False,
    dry_run: bool = False,
) -> ReplayReport:
    """Republish the selected dead letters' original messages to their original topics.

    Key, value and headers are the original ones (correlation id included; a
    ``dlq_replay_of`` header names the dead letter). Afterwards each is marked replayed, so a
    second replay is refused unless ``force``, and every replay and refusal is audited.
    Replays are published before their marks: a crash in between allows one duplicate replay,
    which the stages absorb (outcomes are keyed by event id); the reverse order could lose one.

    Raises:
        ValueError: no selection criterion was given, or ``actor`` is not a pseudonymous id.
        TransientError: the broker could not be read or written.
    """
    snapshot = await _selected_snapshot(kafka, topics, selection, actor, "replay")
    plan = plan_replay(
        snapshot.entries, selection, allowed_topics=set(topics.all().values()), force=force
    )
    replayed = [entry for entry, _ in plan.to_replay]
    if not dry_run and (plan.to_replay or plan.refused):
        await _ensure_marks_topic(kafka, topics)
        async with KafkaPublisher(kafka, topics) as publisher:
            await publisher.deliver(
                [RawMessage(t, k, v, tuple(h)) for _, (t, k, v, h) in plan.to_replay]
            )
            await publisher.deliver(
                [_mark(topics, mark_for(e, DeadLetterMarkKind.REPLAYED, actor)) for e in replayed]
            )
            audits = [_audit(ApiActionKind.DLQ_REPLAY, e, actor) for e in replayed]
            audits += [
                _audit(ApiActionKind.DLQ_REPLAY, e, actor, refused=True) for e, _ in plan.refused
            ]
            await publisher.deliver(audits)
    return ReplayReport(replayed, plan.refused, dry_run)


async def purge(
    kafka: KafkaClientConfig,
    topics: TopicNames,
    selection: DeadLetterFilter,
    *,
    actor: str,
    dry_run: bool = False,
) -> PurgeReport:
    """Purge the selected dead letters: hide them all, delete from the broker what Kafka allows.

    Every selected dead letter is first marked purged (hidden from list and replay). Then the
    longest prefix of each partition made only of purged dead letters is deleted with
    ``DeleteRecords``; their marks are tombstoned, as nothing is left to hide. Purged dead
    letters behind a kept one stay on the broker, hidden, until retention or a later purge
    removes them. Every purged dead letter is audited.

    Raises:
        ValueError: no selection criterion was given, or ``actor`` is not a pseudonymous id.
        TransientError: the broker could not be read or written.
    """
    snapshot = await _selected_snapshot(kafka, topics, selection, actor, "purge")
    plan = plan_purge(
        snapshot.entries,
        selection,
        unreadable=snapshot.unreadable,
        low_watermarks=snapshot.low_watermarks,
    )
    report = PurgeReport(plan.purged, plan.deleted, plan.marked_only, plan.delete_before, dry_run)
    if dry_run or not (plan.purged or plan.deleted):
        return report
    await _ensure_marks_topic(kafka, topics)
    async with KafkaPublisher(kafka, topics) as publisher:
        await publisher.deliver(
            [_mark(topics, mark_for(e, DeadLetterMarkKind.PURGED, actor)) for e in plan.purged]
        )
        if plan.delete_before:
            async with build_admin(kafka) as admin:
                await admin.delete_records(topics.deadletter, plan.delete_before)
            await publisher.deliver([_tombstone(topics, e) for e in plan.deleted])
        await publisher.deliver([_audit(ApiActionKind.DLQ_PURGE, e, actor) for e in plan.purged])
    return report
