"""The audit sink: copies ``audit.log`` into the append-only ``audit_log`` table, and verifies it.

The sink reads the topic ``read_committed`` with manual commits and commits a Kafka offset
only after the rows committed, so every record reaches the table at least once; the insert is
idempotent on ``(chain_partition, sequence)``. A row already stored under a sequence with a
*different* hash is a forked chain: the sink refuses it (``AUDIT_CHAIN_BROKEN``) instead of
silently keeping either. Checkpoints on the topic are not copied: the checkpoint file outside
both stores is the authority against truncation.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.audit import AuditRecord
from schemas.errors import ErrorCode, error_for
from sinks.database import Database, database_errors
from sinks.tables import audit_log
from streams.audit.files import load_public_key, read_checkpoints
from streams.audit.verify import UnreadableRecord, VerificationReport, merge_reports, verify_chain
from streams.audit_topic import parse_message
from streams.topics import TopicNames


class AuditLogRepository:
    """Inserts into and reads the ``audit_log`` table (never updates: the table forbids it)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert(self, rows: Iterable[tuple[AuditRecord, int]]) -> int:
        """Store records (with their audit-topic offsets); the number newly stored.

        Raises:
            IntegrityError: a stored record of the same sequence has a different hash.
        """
        items = list(rows)
        if not items:
            return 0
        values = [
            {
                "chain_partition": record.chain_partition,
                "sequence": record.sequence,
                "hash": record.hash,
                "event_id": record.object.event_id,
                "recorded_at": record.recorded_at,
                "audit_offset": offset,
                "record": record.model_dump(mode="json"),
            }
            for record, offset in items
        ]
        statement = (
            insert(audit_log)
            .values(values)
            .on_conflict_do_nothing(constraint="uq_audit_log_chain_sequence")
            .returning(audit_log.c.sequence)
        )
        with database_errors():
            async with self.engine.begin() as connection:
                inserted = {row.sequence for row in await connection.execute(statement)}
                skipped = [record for record, _ in items if record.sequence not in inserted]
                if skipped:
                    await self._check_same(connection, skipped)
        return len(inserted)

    @staticmethod
    async def _check_same(connection: AsyncConnection, records: list[AuditRecord]) -> None:
        """A redelivered record must equal the stored one; anything else is a fork."""
        by_key = {(r.chain_partition, r.sequence): r.hash for r in records}
        rows = await connection.execute(
            select(audit_log.c.chain_partition, audit_log.c.sequence, audit_log.c.hash).where(
                audit_log.c.sequence.in_([r.sequence for r in records])
            )
        )
        for row in rows:
            expected = by_key.get((row.chain_partition, row.sequence))
            if expected is not None and expected != row.hash:
                raise error_for(
                    ErrorCode.AUDIT_CHAIN_BROKEN,
                    f"chain {row.chain_partition} sequence {row.sequence} already stored "
                    "with another hash",
                )

    async def chains(self) -> dict[int, list[AuditRecord | UnreadableRecord]]:
        """Every stored record per chain, in insertion order (the order verification walks)."""
        result: dict[int, list[AuditRecord | UnreadableRecord]] = {}
        query = select(audit_log.c.chain_partition, audit_log.c.record).order_by(audit_log.c.id)
        with database_errors():
            async with self.engine.connect() as connection:
                stream = await connection.stream(query)
                async for row in stream:
                    result.setdefault(row.chain_partition, []).append(_parse_row(row.record))
        return result

    async def trail(self, event_id: uuid.UUID) -> list[AuditRecord]:
        """Every stored record about one image, in chain order."""
        query = (
            select(audit_log.c.record)
            .where(audit_log.c.event_id == event_id)
            .order_by(audit_log.c.chain_partition, audit_log.c.sequence)
        )
        with database_errors():
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        return [AuditRecord.model_validate(row.record) for row in rows]


def _parse_row(data: object) -> AuditRecord | UnreadableRecord:
    try:
        return AuditRecord.model_validate(data)
    except ValidationError:
        sequence = data.get("sequence") if isinstance(data, dict) else None
        return UnreadableRecord(sequence if isinstance(sequence, int) else None)


class AuditSink:
    """Copies the audit topic into ``audit_log``; commits offsets after the rows commit.

    Args:
        bootstrap: Kafka bootstrap servers.
        prefix: topic prefix.
        group_id: the sink's consumer group.
        database: the started :class:`~sinks.database.Database`.
        max_batch: most messages per database transaction.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        group_id: str,
        database: Database,
        max_batch: int = 500,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = TopicNames(prefix).audit
        self.group_id = group_id
        self.repository = AuditLogRepository(database.engine)
        self.max_batch = max_batch
        self.stored = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Subscribe to the audit topic (committed records only)."""
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        """Stop consuming."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def process_batch(self, timeout_ms: int = 500) -> int:
        """Store one batch, then commit its offsets; the number of messages handled."""
        if self._consumer is None:
            raise RuntimeError("the audit sink is not started")
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
        messages: list[ConsumerRecord] = [m for batch in batches.values() for m in batch]
        if not messages:
            return 0
        rows = []
        for message in messages:
            item = parse_message(message.value, message.headers)
            if isinstance(item, AuditRecord):
                rows.append((item, message.offset))
        self.stored += await self.repository.insert(rows)
        offsets = {
            TopicPartition(m.topic, m.partition): OffsetAndMetadata(m.offset + 1, "")
            for m in messages
        }
        await self._consumer.commit(offsets)
        return len(messages)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Copy until ``stop_event`` is set."""
        await self.start()
        try:
            while not stop_event.is_set():
                await self.process_batch()
        finally:
            await self.stop()

    async def run_until_idle(self, idle_seconds: float = 1.0, deadline: float = 30.0) -> int:
        """Start, copy until nothing arrives for ``idle_seconds``, stop; rows newly stored."""
        await self.start()
        try:
            async with asyncio.timeout(deadline):
                idle_since = time.monotonic()
                while time.monotonic() - idle_since < idle_seconds:
                    if await self.process_batch(timeout_ms=200):
                        idle_since = time.monotonic()
        finally:
            await self.stop()
        return self.stored


async def verify_table(
    database: Database | str, checkpoint_file: Path, public_key_path: Path
) -> VerificationReport:
    """Verify every chain stored in ``audit_log`` against the checkpoint file.

    Args:
        database: a started :class:`Database` or a database URL.
        checkpoint_file: the JSON-lines checkpoint file kept outside the stores.
        public_key_path: the trusted Ed25519 public (or private) key PEM.
    """
    public_key = load_public_key(public_key_path)
    checkpoints = read_checkpoints(checkpoint_file)
    owned = isinstance(database, str)
    db = Database(database, pool_size=1) if isinstance(database, str) else database
    try:
        chains = await AuditLogRepository(db.engine).chains()
    finally:
        if owned:
            await db.dispose()
    partitions = sorted(set(chains) | {cp.chain_partition for cp in checkpoints})
    return merge_reports(
        [
            verify_chain(chains.get(p, []), checkpoints, public_key, chain_partition=p)
            for p in partitions
        ]
    )


async def trail_for_event_in_table(
    database: Database | str, event_id: uuid.UUID
) -> list[AuditRecord]:
    """Every stored audit record about one image (``radstream audit show`` from the table)."""
    db = Database(database, pool_size=1) if isinstance(database, str) else database
    try:
        return await AuditLogRepository(db.engine).trail(event_id)
    finally:
        if isinstance(database, str):
            await db.dispose()
