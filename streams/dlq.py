"""The dead-letter tooling behind ``radstream dlq``: list, show, replay and purge, on Kafka.

The pure decisions (which dead letters a filter selects, what a replay may republish, how far a
purge may delete) live in :mod:`streams.deadletter`; this module reads the topics and performs
what those plans say, with aiokafka.

State that must survive restarts ("this dead letter was replayed", "this one was purged") is
kept on a compacted side topic, ``<prefix>deadletter.marks``, one :class:`DeadLetterMark` per
dead letter keyed by its id (see docs/deadletters.md). Every replay and purge publishes one
:class:`~schemas.audit.ApiAction` per dead letter to ``api.actions``, which the audit agent
chains into the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from schemas.audit import ApiActionKind
from schemas.deadletter_marks import DeadLetterMark, DeadLetterMarkKind
from schemas.errors import ErrorCode, TransientError
from schemas.events import CORRELATION_ID_HEADER, DeadLetter
from streams.deadletter import (
    DeadLetterEntry,
    DeadLetterFilter,
    dlq_action,
    mark_for,
    plan_purge,
    plan_replay,
    select,
)
from streams.topics import TOPIC_SPECS, TopicKey, TopicNames

MARKS_TOPIC_CONFIGS = TOPIC_SPECS[TopicKey.DEADLETTER_MARKS].configs()
_TOPIC_ALREADY_EXISTS = 36
# Reading a topic to its end needs a few fetches; the bound only stops a hung broker.
READ_TIMEOUT_SECONDS = 30.0
_ACTOR_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")


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
async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of ``topic``; empty when it does not exist (yet).

    Raises:
        TransientError: BROKER_UNAVAILABLE.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="radstream-dlq")
    try:
        await admin.start()
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
    except KafkaError as exc:
        raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker unreachable") from exc
    finally:
        await admin.close()
    return sorted(
        p["partition"] for d in described if d.get("error_code") == 0 for p in d["partitions"]
    )


async def read_topic_records(
    bootstrap: str, topic: str, *, timeout_seconds: float = READ_TIMEOUT_SECONDS
) -> tuple[list[Any], dict[int, int]]:
    """Every committed record of ``topic`` up to its current end, and each partition's start.

    Reads by assignment (no consumer group) and stops at the end offsets taken at the start,
    so it returns as soon as the topic is read, not after an idle timeout. A missing topic
    reads as empty.

    Raises:
        TransientError: BROKER_UNAVAILABLE, or TIMEOUT when the end is not reached in time.
    """
    partitions = await topic_partitions(bootstrap, topic)
    if not partitions:
        return [], {}
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        records: list[Any] = []
        async with asyncio.timeout(timeout_seconds):
            while True:
                pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
                if not pending:
                    break
                batch = await consumer.getmany(*pending, timeout_ms=200)
                records.extend(r for tp, rs in batch.items() for r in rs if r.offset < ends[tp])
        return records, {tp.partition: starts[tp] for tp in tps}
    except TimeoutError as exc:
        raise TransientError(ErrorCode.TIMEOUT, f"reading {topic} did not finish") from exc
    except KafkaError as exc:
        raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker unreachable") from exc
    finally:
        await consumer.stop()


async def read_marks(bootstrap: str, topics: TopicNames) -> dict[uuid.UUID, DeadLetterMark]:
    """The latest mark of every dead letter (tombstones remove; junk values are ignored)."""
    records, _ = await read_topic_records(bootstrap, marks_topic(topics))
    marks: dict[uuid.UUID, DeadLetterMark] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
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


async def read_snapshot(bootstrap: str, topics: TopicNames) -> DeadLetterSnapshot:
    """The whole dead-letter topic with marks applied; undecodable records are listed apart."""
    records, starts = await read_topic_records(bootstrap, topics.deadletter)
    marks = await read_marks(bootstrap, topics)
    entries: list[DeadLetterEntry] = []
    unreadable: list[tuple[int, int]] = []
    for record in records:
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
    return DeadLetterSnapshot(entries, sorted(unreadable), starts)


async def list_dead_letters(
    bootstrap: str,
    topics: TopicNames,
    selection: DeadLetterFilter,
    *,
    limit: int | None = None,
    include_purged: bool = False,
) -> list[DeadLetterEntry]:
    """The dead letters ``selection`` selects, in topic order (purged ones hidden by default)."""
    snapshot = await read_snapshot(bootstrap, topics)
    chosen = select(snapshot.entries, selection, include_purged=include_purged)
    return chosen if limit is None else chosen[:limit]


async def get_dead_letter(
    bootstrap: str, topics: TopicNames, dead_letter_id: uuid.UUID
) -> DeadLetterEntry | None:
    """One dead letter by id (purged ones included, so ``show`` can say so), or None."""
    selection = DeadLetterFilter(ids=frozenset({dead_letter_id}))
    found = await list_dead_letters(bootstrap, topics, selection, include_purged=True)
    return found[0] if found else None


# ----------------------------------------------------------------------------- writing
async def ensure_marks_topic(bootstrap: str, topics: TopicNames) -> None:
    """Create the compacted marks topic when it is missing (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="radstream-dlq")
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(marks_topic(topics), 1, 1, topic_configs=MARKS_TOPIC_CONFIGS)]
        )
        failed = [
            m for _t, code, m in response.topic_errors if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "marks topic creation failed")
    except KafkaError as exc:
        raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker unreachable") from exc
    finally:
        await admin.close()


class _Writer:
    """One idempotent acks=all producer for a dlq command's replays, marks and audit actions."""

    def __init__(self, bootstrap: str, topics: TopicNames) -> None:
        self._topics = topics
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="radstream-dlq",
            acks="all",
            enable_idempotence=True,
        )

    async def __aenter__(self) -> _Writer:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker unreachable") from exc
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._producer.stop()

    async def send_all(
        self, messages: Sequence[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]
    ) -> None:
        """Send (topic, key, value, headers) messages and wait until every one is acknowledged."""
        try:
            futures = [
                await self._producer.send(topic, value=value, key=key, headers=headers)
                for topic, key, value, headers in messages
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "delivery failed") from exc

    def mark(self, mark: DeadLetterMark) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
        """The marks-topic message for ``mark``."""
        return marks_topic(self._topics), mark.message_key(), _json(mark), []

    def tombstone(self, entry: DeadLetterEntry) -> tuple[str, bytes, None, list[tuple[str, bytes]]]:
        """The marks-topic tombstone removing ``entry``'s mark."""
        key = str(entry.dead_letter.dead_letter_id).encode()
        return marks_topic(self._topics), key, None, []

    def audit(
        self, kind: ApiActionKind, entry: DeadLetterEntry, actor: str, *, refused: bool = False
    ) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
        """The ``api.actions`` message auditing one dead letter's replay or purge."""
        action = dlq_action(kind, entry, actor=actor, refused=refused)
        headers = [(CORRELATION_ID_HEADER, action.correlation_id.encode())]
        return self._topics.api_actions, actor.encode(), _json(action), headers


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


async def replay(
    bootstrap: str,
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
    check_actor(actor)
    if not selection.selective:
        raise ValueError("replay needs --id or at least one filter")
    snapshot = await read_snapshot(bootstrap, topics)
    plan = plan_replay(
        snapshot.entries, selection, allowed_topics=set(topics.all().values()), force=force
    )
    replayed = [entry for entry, _ in plan.to_replay]
    if not dry_run and (plan.to_replay or plan.refused):
        await ensure_marks_topic(bootstrap, topics)
        async with _Writer(bootstrap, topics) as writer:
            await writer.send_all([record for _, record in plan.to_replay])
            await writer.send_all(
                [writer.mark(mark_for(e, DeadLetterMarkKind.REPLAYED, actor)) for e in replayed]
            )
            audits = [writer.audit(ApiActionKind.DLQ_REPLAY, e, actor) for e in replayed]
            audits += [
                writer.audit(ApiActionKind.DLQ_REPLAY, e, actor, refused=True)
                for e, _ in plan.refused
            ]
            await writer.send_all(audits)
    return ReplayReport(replayed, plan.refused, dry_run)


async def purge(
    bootstrap: str,
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
    check_actor(actor)
    if not selection.selective:
        raise ValueError("purge needs --id or at least one filter")
    snapshot = await read_snapshot(bootstrap, topics)
    plan = plan_purge(
        snapshot.entries,
        selection,
        unreadable=snapshot.unreadable,
        low_watermarks=snapshot.low_watermarks,
    )
    report = PurgeReport(plan.purged, plan.deleted, plan.marked_only, plan.delete_before, dry_run)
    if dry_run or not (plan.purged or plan.deleted):
        return report
    await ensure_marks_topic(bootstrap, topics)
    async with _Writer(bootstrap, topics) as writer:
        await writer.send_all(
            [writer.mark(mark_for(e, DeadLetterMarkKind.PURGED, actor)) for e in plan.purged]
        )
        if plan.delete_before:
            await _delete_records(bootstrap, topics.deadletter, plan.delete_before)
            await writer.send_all([writer.tombstone(e) for e in plan.deleted])
        await writer.send_all(
            [writer.audit(ApiActionKind.DLQ_PURGE, e, actor) for e in plan.purged]
        )
    return report


async def _delete_records(bootstrap: str, topic: str, before: dict[int, int]) -> None:
    """Delete every record of ``topic``'s partitions below the given offsets (DeleteRecords)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="radstream-dlq")
    try:
        await admin.start()
        await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(offset) for p, offset in before.items()}
        )
    except KafkaError as exc:
        raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "deleting records failed") from exc
    finally:
        await admin.close()
