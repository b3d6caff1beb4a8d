"""The audit table: copying ``audit.log`` into the append-only ``audit_log`` table, and reading it.

:class:`AuditTableWriter` is a :class:`~streams.kafka.loop.BatchLoop` that reads the topic
``read_committed`` with manual commits. Its :class:`AuditTableSink` follows the batching-sink
contract (:mod:`streams.batching_sink`): the records of one consumed batch are added, flushed in
one transaction through :class:`~sinks.repositories.AuditLogRepository` (idempotent on
``(chain_partition, sequence)``), and only then are the offsets committed — so every record
reaches the table at least once and exactly once in effect. While PostgreSQL is down the flush
is retried with backpressure, like the results sink's. A row already stored under a sequence
with a *different* hash is a forked chain: it is quarantined in ``audit_quarantine`` like every
message the agent did not write (no valid writer signature, unreadable): kept, logged by
position, counted — the copy never stops for it. Checkpoints on the topic are copied into
``audit_checkpoints``, the table's own trust anchors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import structlog

from schemas.audit import AuditCheckpoint, AuditRecord
from schemas.errors import ErrorCode
from schemas.settings import Settings
from sinks.database import Database
from sinks.records import AuditStoreReport, QuarantinedMessage
from sinks.repositories import AuditLogRepository
from streams.audit.checkpoints import TrustedKeys
from streams.audit.files import read_checkpoint_file
from streams.audit.io.topic import TopicItem, classify_message
from streams.audit.verify import VerificationReport, verify_chains
from streams.batching_sink import Backpressure, flush_until_committed
from streams.kafka import (
    ConsumerRecord,
    KafkaClientConfig,
    KafkaConsumer,
    TopicPartition,
    build_consumer,
)
from streams.topics import TopicNames

log = structlog.get_logger("radstream.audit")


class AuditTableSink:
    """Collects one batch of the audit topic and stores it in one transaction.

    Genuine records go to ``audit_log``, checkpoints to ``audit_checkpoints``, and every
    message the agent did not write to ``audit_quarantine`` (see
    :meth:`~sinks.repositories.AuditLogRepository.store`).
    """

    def __init__(self, repository: AuditLogRepository, backpressure: Backpressure) -> None:
        self._repository = repository
        self._backpressure = backpressure
        self._topic = ""
        self._records: list[tuple[AuditRecord, int]] = []
        self._checkpoints: list[tuple[AuditCheckpoint, int]] = []
        self._quarantine: list[QuarantinedMessage] = []

    @property
    def backpressure(self) -> Backpressure:
        """How the runtime waits while PostgreSQL is unavailable."""
        return self._backpressure

    def add(self, item: tuple[ConsumerRecord, TopicItem]) -> None:
        """Collect one audit-topic message, as :func:`classify_message` judged it."""
        message, classified = item
        self._topic = message.topic
        if isinstance(classified, AuditRecord):
            self._records.append((classified, message.offset))
        elif isinstance(classified, AuditCheckpoint):
            self._checkpoints.append((classified, message.offset))
        else:
            self._quarantine.append(
                QuarantinedMessage(
                    audit_topic=message.topic,
                    audit_partition=message.partition,
                    audit_offset=message.offset,
                    reason=classified.reason,
                    claimed_sequence=classified.sequence,
                    payload=bytes(message.value or b""),
                )
            )

    def clear(self) -> None:
        """Forget the collected messages."""
        self._records, self._checkpoints, self._quarantine = [], [], []

    async def flush(self) -> AuditStoreReport:
        """Store the collected messages in one transaction (redeliveries are skipped)."""
        report = await self._repository.store(
            self._topic, self._records, self._checkpoints, self._quarantine
        )
        self.clear()
        return report


class AuditTableWriter:
    """Copies the audit topic into ``audit_log``; commits offsets after the rows committed.

    Args:
        kafka: the Kafka connection.
        prefix: topic prefix.
        group_id: the writer's consumer group.
        sink: where the records go.
        trusted: the keys whose record signatures make a record the agent's.
        max_batch: most messages per database transaction.
        quarantined: told the number of foreign messages quarantined by each batch.
    """

    def __init__(
        self,
        *,
        kafka: KafkaClientConfig,
        prefix: str,
        group_id: str,
        sink: AuditTableSink,
        trusted: TrustedKeys,
        max_batch: int = 500,
        quarantined: Callable[[int], None] | None = None,
    ) -> None:
        self.kafka = kafka
        self.topic = TopicNames(prefix).audit
        self.group_id = group_id
        self.sink = sink
        self.trusted = trusted
        self.max_batch = max_batch
        self._quarantined = quarantined
        self.stored = 0
        self.quarantined = 0
        self._consumer: KafkaConsumer | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        database: Database,
        backpressure: Backpressure,
        trusted: TrustedKeys,
        quarantined: Callable[[int], None] | None = None,
    ) -> AuditTableWriter:
        """The deployment's writer (group ``<group prefix>-audit-sink``) into ``database``."""
        sink = AuditTableSink(AuditLogRepository(database.sessions), backpressure)
        return cls(
            kafka=KafkaClientConfig.from_settings(settings, client_id="radstream-audit-sink"),
            prefix=settings.topic_prefix,
            group_id=f"{settings.consumer_group_prefix}-audit-sink",
            sink=sink,
            trusted=trusted,
            quarantined=quarantined,
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

    async def caught_up(self) -> bool:
        """Whether everything committed on this writer's partitions of the topic is copied.

        A writer with no partitions (another member of its group copies them) has nothing to
        copy; one not started has not caught up.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        partitions = consumer.assignment()
        ends = await consumer.end_offsets(partitions)
        for partition, end in ends.items():
            if await consumer.position(partition) < end:
                return False
        return True

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
            self.sink.add((message, classify_message(message, self.trusted)))
        report = await flush_until_committed(self.sink)
        self.stored += report.stored
        self._report_quarantine(report.quarantined)
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        await self._consumer.commit(offsets)
        return len(messages)

    def _report_quarantine(self, quarantined: tuple[QuarantinedMessage, ...]) -> None:
        """One error line per foreign message (its position and why, never its content)."""
        for message in quarantined:
            log.error(
                "audit_record_quarantined",
                error_code=ErrorCode.AUDIT_RECORD_FORGED.value,
                topic=message.audit_topic,
                partition=message.audit_partition,
                offset=message.audit_offset,
                claimed_sequence=message.claimed_sequence,
                reason=message.reason,
            )
        if quarantined:
            self.quarantined += len(quarantined)
            if self._quarantined is not None:
                self._quarantined(len(quarantined))


async def verify_table(
    repository: AuditLogRepository,
    topic: str,
    checkpoint_file: Path,
    trusted: TrustedKeys,
    *,
    max_uncovered: int | None = None,
) -> VerificationReport:
    """Verify every chain stored in ``audit_log`` against the checkpoint file and table.

    Args:
        repository: the audit log's repository.
        topic: the audit topic whose chains are verified (other topics' rows are not read).
        checkpoint_file: the topic's JSON-lines checkpoint file kept outside the stores.
        trusted: the pinned Ed25519 verification keys.
        max_uncovered: the checkpoint interval; more records after the newest genuine
            checkpoint (file or table) fail as missing checkpoints.
    """
    file = read_checkpoint_file(checkpoint_file)
    return verify_chains(
        await repository.chains(topic),
        [*file.checkpoints, *await repository.checkpoints(topic)],
        trusted,
        max_uncovered=max_uncovered,
        malformed_checkpoint_lines=file.malformed_lines,
    )


async def trail_for_event_in_table(
    repository: AuditLogRepository, event_id: uuid.UUID, topic: str
) -> list[AuditRecord]:
    """Every audit record stored from ``topic`` about one image (``audit show`` from the table)."""
    return await repository.trail(event_id, topic)
