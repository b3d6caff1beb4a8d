"""The audit table: copying ``audit.log`` into the append-only ``audit_log`` table, and reading it.

:class:`AuditTableWriter` is a :class:`~streams.kafka.loop.BatchLoop` that reads the topic
``read_committed`` with manual commits. Its :class:`AuditTableSink` follows the batching-sink
contract (:mod:`streams.batching_sink`): the records of one consumed batch are added, flushed in
one transaction through :class:`~sinks.repositories.AuditLogRepository` (idempotent on
``(chain_partition, sequence)``), and only then are the offsets committed — so every record
reaches the table at least once and exactly once in effect. While PostgreSQL is down the flush
is retried with backpressure, like the results sink's. A row already stored under a sequence
with a *different* hash is a forked chain: the flush refuses it (``AUDIT_CHAIN_BROKEN``), which
stops the loop. Checkpoints on the topic are not copied: the checkpoint file outside both stores
is the authority against truncation.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from schemas.audit import AuditRecord
from schemas.settings import Settings
from sinks.database import Database
from sinks.repositories import AuditLogRepository
from streams.audit.files import load_public_key, read_checkpoints
from streams.audit.io.topic import parse_message
from streams.audit.verify import VerificationReport, verify_chains
from streams.batching_sink import Backpressure, flush_until_committed
from streams.kafka import KafkaClientConfig, KafkaConsumer, TopicPartition, build_consumer
from streams.topics import TopicNames


class AuditTableSink:
    """Adds audit records (with their topic offsets) and flushes them in one transaction."""

    def __init__(self, repository: AuditLogRepository, backpressure: Backpressure) -> None:
        self._repository = repository
        self._backpressure = backpressure
        self._pending: list[tuple[AuditRecord, int]] = []

    @property
    def backpressure(self) -> Backpressure:
        """How the runtime waits while PostgreSQL is unavailable."""
        return self._backpressure

    def add(self, item: tuple[AuditRecord, int]) -> None:
        """Collect one record and its offset on the audit topic."""
        self._pending.append(item)

    def clear(self) -> None:
        """Forget the collected records."""
        self._pending = []

    async def flush(self) -> int:
        """Store the collected records; the number newly stored (redeliveries are skipped)."""
        stored = await self._repository.insert(self._pending)
        self.clear()
        return stored


class AuditTableWriter:
    """Copies the audit topic into ``audit_log``; commits offsets after the rows committed.

    Args:
        kafka: the Kafka connection.
        prefix: topic prefix.
        group_id: the writer's consumer group.
        sink: where the records go.
        max_batch: most messages per database transaction.
    """

    def __init__(
        self,
        *,
        kafka: KafkaClientConfig,
        prefix: str,
        group_id: str,
        sink: AuditTableSink,
        max_batch: int = 500,
    ) -> None:
        self.kafka = kafka
        self.topic = TopicNames(prefix).audit
        self.group_id = group_id
        self.sink = sink
        self.max_batch = max_batch
        self.stored = 0
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, database: Database, backpressure: Backpressure
    ) -> AuditTableWriter:
        """The deployment's writer (group ``<group prefix>-audit-sink``) into ``database``."""
        sink = AuditTableSink(AuditLogRepository(database.sessions), backpressure)
        return cls(
            kafka=KafkaClientConfig.from_settings(settings, client_id="radstream-audit-sink"),
            prefix=settings.topic_prefix,
            group_id=f"{settings.consumer_group_prefix}-audit-sink",
            sink=sink,
        )

    @property
    def name(self) -> str:
        """The loop's name in logs."""
        return "audit-table"

    async def start(self) -> None:
        """Subscribe to the audit topic (committed records only)."""
        self._consumer = build_consumer(
            self.kafka, self.topic, group_id=self.group_id, max_poll_records=self.max_batch
        )
        await self._consumer.start()

    async def stop(self, *, clean: bool = True) -> None:
        """Stop consuming."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def process_batch(self, timeout_ms: int = 500) -> int:
        """Store one batch, then commit its offsets; the number of messages handled."""
        if self._consumer is None:
            raise RuntimeError("the audit table writer is not started")
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
        messages = [m for batch in batches.values() for m in batch]
        if not messages:
            return 0
        self.sink.clear()
        for message in messages:
            item = parse_message(message.value, message.headers)
            if isinstance(item, AuditRecord):
                self.sink.add((item, message.offset))
        self.stored += await flush_until_committed(self.sink)
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        await self._consumer.commit(offsets)
        return len(messages)


async def verify_table(
    repository: AuditLogRepository, checkpoint_file: Path, public_key_path: Path
) -> VerificationReport:
    """Verify every chain stored in ``audit_log`` against the checkpoint file.

    Args:
        repository: the audit log's repository.
        checkpoint_file: the JSON-lines checkpoint file kept outside the stores.
        public_key_path: the trusted Ed25519 public (or private) key PEM.
    """
    public_key = load_public_key(public_key_path)
    checkpoints = read_checkpoints(checkpoint_file)
    return verify_chains(await repository.chains(), checkpoints, public_key)


async def trail_for_event_in_table(
    repository: AuditLogRepository, event_id: uuid.UUID
) -> list[AuditRecord]:
    """Every stored audit record about one image (``radstream audit show`` from the table)."""
    return await repository.trail(event_id)
