"""The audit agent: an aiokafka transactional consume→produce loop (exactly once per event).

It does not use Faust's ``processing_guarantee="exactly_once"`` (open bugs: duplicates,
ProducerFenced on rebalance, sends outside the transaction). Per batch of source messages:

1. ``async with producer.transaction()``: turn each message into a record appended to the
   chain, produce it to ``audit.log`` partition ``chain_partition``; produce a signed checkpoint
   when the :class:`CheckpointPolicy` says so; ``send_offsets_to_transaction`` for the batch.
2. Only after the commit succeeded: adopt the new chain head and append the checkpoints to the
   checkpoint file (fsync). A checkpoint in the file therefore always names a committed head.

Exactly once: the source offsets commit atomically with the records, and every consumer here
reads ``read_committed``, so a redelivered source message (after a crash) was never recorded.
The chain head is recovered at start-up from the topic (the last committed record), never from
memory, so a restart continues with the next sequence and the same ``prev_hash``.

``transactional_id`` is ``<group_id>.audit-chain-<chain_partition>``: exactly one writer per
chain. Starting a second agent for the same chain fences the first (its next transaction
fails with ``ProducerFenced``) and aborts its open transaction; that is the intended protection
against two writers forking a chain. Run one agent per chain partition; the audit topic has one
partition, so one agent. aiokafka's ``send_offsets_to_transaction`` does not carry the consumer
group generation (KIP-447), so do not run several agents in one consumer group on one chain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from schemas.audit import AuditCheckpoint, AuditDraft, AuditRecord, AuditSource
from schemas.events import CORRELATION_ID_HEADER, utc_now
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import CheckpointPolicy, sign_checkpoint
from streams.audit.files import append_checkpoint, load_or_create_signing_key, read_checkpoints
from streams.audit.records import AUDITED_TOPICS, draft_for_message
from streams.audit_topic import (
    CHECKPOINT,
    RECORD,
    RECORD_TYPE_HEADER,
    chain_key,
    recover_head,
)
from streams.topics import TopicKey, TopicNames

log = structlog.get_logger("radstream.audit")


def _first_offsets(messages: list[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The first offset of each source partition in a batch."""
    first: dict[TopicPartition, int] = {}
    for message in messages:
        tp = TopicPartition(message.topic, message.partition)
        first[tp] = min(first.get(tp, message.offset), message.offset)
    return first


def _header(message: ConsumerRecord, name: str) -> str | None:
    for key, value in message.headers or ():
        if key == name and value is not None:
            return bytes(value).decode("utf-8", errors="replace")
    return None


class AuditAgent:
    """Audits every stage topic and API action into the hash-chained ``audit.log`` topic.

    Args:
        bootstrap: Kafka bootstrap servers.
        prefix: topic prefix (``TopicNames(prefix)`` names the topics).
        group_id: consumer group of the source topics; also the transactional id's stem.
        signing_key_path: Ed25519 PEM key, created 0600 if absent.
        checkpoint_file: JSON-lines checkpoint file outside the audit store.
        policy: when to take checkpoints.
        chain_partition: the chain (= audit topic partition) this agent writes.
        max_batch: most source messages per transaction.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        group_id: str,
        signing_key_path: Path,
        checkpoint_file: Path,
        policy: CheckpointPolicy,
        chain_partition: int = 0,
        max_batch: int = 500,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = TopicNames(prefix)
        self.group_id = group_id
        self.signing_key_path = signing_key_path
        self.checkpoint_file = checkpoint_file
        self.policy = policy
        self.chain_partition = chain_partition
        self.max_batch = max_batch
        self._clock = clock
        self._wall_clock = wall_clock
        self._key = load_or_create_signing_key(signing_key_path)
        self._source_keys = {self.topics[key]: key for key in AUDITED_TOPICS}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.state = ChainState.genesis(chain_partition)
        self._records_since_checkpoint = 0
        self._last_checkpoint_at = clock()
        self.records_written = 0

    @property
    def transactional_id(self) -> str:
        """One id per chain: a second writer of the same chain fences this one."""
        return f"{self.group_id}.audit-chain-{self.chain_partition}"

    @property
    def audit_topic(self) -> str:
        """The topic the chain is written to."""
        return self.topics.audit

    async def start(self) -> None:
        """Fence older writers, recover the chain head from the topic, then subscribe."""
        # The producer first: InitProducerId aborts a crashed predecessor's open transaction,
        # so the head read next (read_committed) is final.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=self.transactional_id,
            acks="all",
        )
        await self._producer.start()
        head = await recover_head(self.bootstrap, self.audit_topic, self.chain_partition)
        self.state = head.state
        self._resync_checkpoint_file(head.last_checkpoint)
        covered = head.last_checkpoint.sequence if head.last_checkpoint else -1
        self._records_since_checkpoint = self.state.sequence - covered
        self._last_checkpoint_at = self._clock()
        self._consumer = AIOKafkaConsumer(
            *self._source_keys,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            # Static membership: a restarted agent (same chain, same id) takes its old place at
            # once instead of waiting a session timeout for the dead member to be evicted.
            group_instance_id=self.transactional_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
        )
        await self._consumer.start()
        log.info(
            "audit_agent_started",
            chain_partition=self.chain_partition,
            next_sequence=self.state.next_sequence,
        )

    def _resync_checkpoint_file(self, last: AuditCheckpoint | None) -> None:
        """Copy the topic's last checkpoint into the file if a crash lost it in between."""
        if last is None:
            return
        ours = [
            cp
            for cp in read_checkpoints(self.checkpoint_file)
            if cp.chain_partition == self.chain_partition
        ]
        if not ours or ours[-1].sequence < last.sequence:
            append_checkpoint(self.checkpoint_file, last)

    async def stop(self, *, checkpoint: bool = True) -> None:
        """Stop, first checkpointing the records written since the last checkpoint."""
        try:
            if checkpoint and self._producer is not None and self._records_since_checkpoint > 0:
                await self._commit_checkpoint_only()
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
            self._consumer = self._producer = None

    async def process_batch(self, timeout_ms: int = 500) -> int:
        """Audit one batch of source messages in one transaction; the number recorded."""
        consumer, producer = self._require()
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
        messages = sorted(
            (m for batch in batches.values() for m in batch),
            key=lambda m: (m.topic, m.partition, m.offset),
        )
        if not messages:
            if self.policy.due(self._records_since_checkpoint, self._seconds_since_checkpoint()):
                await self._commit_checkpoint_only()
            return 0
        try:
            return await self._record_batch(producer, messages)
        except Exception:
            # The transaction was aborted: rewind to the batch's first offsets so the same
            # messages are audited again instead of skipped (getmany already moved past them).
            for tp, offset in _first_offsets(messages).items():
                consumer.seek(tp, offset)
            raise

    async def _record_batch(
        self, producer: AIOKafkaProducer, messages: list[ConsumerRecord]
    ) -> int:
        state = self.state
        since = self._records_since_checkpoint
        checkpoint_at = self._last_checkpoint_at
        checkpoints: list[AuditCheckpoint] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        async with producer.transaction():
            futures = []
            for message in messages:
                record, state = append(state, self._draft(message))
                futures.append(await self._send_record(producer, record))
                since += 1
                if self.policy.due(since, self._clock() - checkpoint_at):
                    cp = sign_checkpoint(self._key, state, self._wall_clock())
                    futures.append(await self._send_checkpoint(producer, cp))
                    checkpoints.append(cp)
                    since, checkpoint_at = 0, self._clock()
                tp = TopicPartition(message.topic, message.partition)
                offsets[tp] = OffsetAndMetadata(message.offset + 1, "")
            await asyncio.gather(*futures)
            await producer.send_offsets_to_transaction(offsets, self.group_id)
        # Committed: only now is the new head real and may a checkpoint be kept outside.
        self.state = state
        self._records_since_checkpoint = since
        self._last_checkpoint_at = checkpoint_at
        for cp in checkpoints:
            append_checkpoint(self.checkpoint_file, cp)
        self.records_written += len(messages)
        return len(messages)

    async def _commit_checkpoint_only(self) -> None:
        _, producer = self._require()
        cp = sign_checkpoint(self._key, self.state, self._wall_clock())
        async with producer.transaction():
            await (await self._send_checkpoint(producer, cp))
        append_checkpoint(self.checkpoint_file, cp)
        self._records_since_checkpoint = 0
        self._last_checkpoint_at = self._clock()

    def _seconds_since_checkpoint(self) -> float:
        return self._clock() - self._last_checkpoint_at

    def _draft(self, message: ConsumerRecord) -> AuditDraft:
        key: TopicKey = self._source_keys[message.topic]
        source = AuditSource(
            topic=message.topic, partition=message.partition, offset=message.offset
        )
        message_time = datetime.fromtimestamp(message.timestamp / 1000, tz=UTC)
        return draft_for_message(
            key,
            message.value,
            source,
            message_time,
            correlation_id=_header(message, CORRELATION_ID_HEADER),
        )

    async def _send_record(
        self, producer: AIOKafkaProducer, record: AuditRecord
    ) -> asyncio.Future[object]:
        headers = [(RECORD_TYPE_HEADER, RECORD)]
        if record.correlation_id:
            headers.append((CORRELATION_ID_HEADER, record.correlation_id.encode()))
        return await producer.send(  # type: ignore[no-any-return]
            self.audit_topic,
            value=record.model_dump_json().encode(),
            key=chain_key(self.chain_partition),
            partition=self.chain_partition,
            headers=headers,
        )

    async def _send_checkpoint(
        self, producer: AIOKafkaProducer, checkpoint: AuditCheckpoint
    ) -> asyncio.Future[object]:
        return await producer.send(  # type: ignore[no-any-return]
            self.audit_topic,
            value=checkpoint.model_dump_json().encode(),
            key=chain_key(self.chain_partition),
            partition=self.chain_partition,
            headers=[(RECORD_TYPE_HEADER, CHECKPOINT)],
        )

    def _require(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        if self._consumer is None or self._producer is None:
            raise RuntimeError("the audit agent is not started")
        return self._consumer, self._producer

    async def run(self, stop_event: asyncio.Event, *, restart_delay: float = 1.0) -> None:
        """Audit until ``stop_event`` is set; then checkpoint and stop.

        On a broker error the agent restarts from durable state (head from the topic, offsets
        from the group) after ``restart_delay``; nothing escapes the loop. A fenced agent
        (another writer of this chain started) stops at once and re-raises: it must not write
        again.
        """
        while not stop_event.is_set():
            await self.start()
            try:
                while not stop_event.is_set():
                    await self.process_batch()
            except ProducerFenced:
                log.exception("audit_agent_fenced", transactional_id=self.transactional_id)
                await self.stop(checkpoint=False)
                raise
            except (KafkaError, OSError, TimeoutError):
                log.exception("audit_agent_restarting", chain_partition=self.chain_partition)
                await self.stop(checkpoint=False)
                await asyncio.sleep(restart_delay)
                continue
            await self.stop()

    async def run_until_idle(self, idle_seconds: float = 1.0, deadline: float = 30.0) -> int:
        """Start, audit until nothing arrives for ``idle_seconds``, checkpoint, stop (tests/CLI).

        Returns the number of source messages audited.
        """
        await self.start()
        try:
            async with asyncio.timeout(deadline):
                idle_since = self._clock()
                while self._clock() - idle_since < idle_seconds:
                    if await self.process_batch(timeout_ms=200):
                        idle_since = self._clock()
        finally:
            await self.stop()
        return self.records_written
