"""The audit agent: a transactional consume→produce loop (exactly once per event).

It does not use Faust's ``processing_guarantee="exactly_once"`` (open bugs: duplicates,
ProducerFenced on rebalance, sends outside the transaction). Per batch of source messages:

1. in one producer transaction: turn each message into a record appended to the chain, produce
   it to ``audit.log`` partition ``chain_partition``; produce a signed checkpoint when the
   :class:`CheckpointPolicy` says so; commit the batch's source offsets in the transaction.
2. Only after the commit succeeded: adopt the new chain head and append the checkpoints to the
   checkpoint file (fsync). A checkpoint in the file therefore always names a committed head.

Exactly once: the source offsets commit atomically with the records, and every consumer here
reads ``read_committed``, so a redelivered source message (after a crash) was never recorded.
The chain head is recovered at start-up from the topic (the last committed record), never from
memory, so a restart continues with the next sequence and the same ``prev_hash``.

``transactional_id`` is ``<group_id>.audit-chain-<chain_partition>``: exactly one writer per
chain. Several agents of one chain may run (a second worker, the demo beside a worker): they
share a :class:`~streams.audit.io.lease.ChainLease`, and only its holder opens the transactional
producer and the source consumer; the others stand by and take over when it stops or dies. The
transactional id stays the safety net: a writer that lost the lease without noticing is fenced
by its successor (``BROKER_REQUEST_REFUSED``) rather than forking the chain.

The agent is a :class:`~streams.kafka.loop.BatchLoop`: run it with
:func:`~streams.kafka.loop.run_until_stopped` (restarts after broker errors, stops for good when
fenced) or :func:`~streams.kafka.loop.run_until_idle`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import structlog

from schemas.audit import AuditCheckpoint, AuditDraft, AuditSource
from schemas.correlation import CORRELATION_ID_HEADER
from schemas.errors import ErrorCode, error_for
from schemas.events import utc_now
from schemas.settings import Settings
from streams.audit.chain import ChainState, append
from streams.audit.checkpoints import (
    CheckpointPolicy,
    TrustedKeys,
    key_id,
    sign_checkpoint,
    sign_record,
)
from streams.audit.files import (
    append_checkpoint,
    checkpoint_file_for,
    load_or_create_signing_key,
    read_checkpoints,
)
from streams.audit.io.lease import ChainLease, lease_group_id
from streams.audit.io.topic import checkpoint_message, record_message, recover_head
from streams.audit.records import AUDITED_TOPICS, draft_for_message
from streams.kafka import (
    ConsumerRecord,
    KafkaClientConfig,
    KafkaConsumer,
    KafkaProducer,
    RawMessage,
    TopicPartition,
    TopicReader,
    build_consumer,
    build_producer,
    stop_all,
)
from streams.topics import TopicKey, TopicNames

log = structlog.get_logger("radstream.audit")


T = TypeVar("T")


async def finish_before_cancelling(work: Coroutine[object, object, T], *, bound: float) -> T:
    """Run ``work`` (a Kafka transaction) to its end even when the caller is cancelled.

    Cancelling a task inside ``producer.transaction()`` makes aiokafka abort the transaction
    from within, and ``abort_transaction`` can then wait forever for sends that never finish
    (issue 17 B). So a cancellation is deferred: the transaction is given up to ``bound``
    seconds to commit or abort on its own, then the cancellation proceeds. A transaction still
    open after that is left to the broker, which aborts it when the next writer of the chain
    starts (``InitProducerId``) or its timeout passes.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task}, timeout=bound)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise


def _first_offsets(messages: Iterable[ConsumerRecord]) -> dict[TopicPartition, int]:
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
        kafka: the Kafka connection.
        prefix: topic prefix (``TopicNames(prefix)`` names the topics).
        group_id: consumer group of the source topics; also the transactional id's stem.
        signing_key_path: Ed25519 PEM key, created 0600 if absent.
        checkpoint_file: JSON-lines checkpoint file outside the audit store.
        policy: when to take checkpoints.
        chain_partition: the chain (= audit topic partition) this agent writes.
        max_batch: most source messages per transaction.
        batch_wait_seconds: how long to keep gathering after the first message of a batch.
        clock: monotonic seconds for the checkpoint policy (injectable).
        wall_clock: the time checkpoints are signed at.
        trusted: the pinned verification keys; when any are pinned, the signing key must be
            one of them (a replaced key file is refused, not silently used).
        transaction_bound_seconds: how long a cancelled agent lets its open transaction finish.
        lease_wait_seconds: how long ``start`` waits for the chain's lease before standing by
            (a standby keeps asking in ``process_batch``).

    Raises:
        RadstreamError: SETTINGS_INVALID, keys are pinned and the signing key is not one.
    """

    def __init__(
        self,
        *,
        kafka: KafkaClientConfig,
        prefix: str,
        group_id: str,
        signing_key_path: Path,
        checkpoint_file: Path,
        policy: CheckpointPolicy,
        chain_partition: int = 0,
        max_batch: int = 500,
        batch_wait_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        trusted: TrustedKeys | None = None,
        transaction_bound_seconds: float = 30.0,
        lease_wait_seconds: float = 15.0,
    ) -> None:
        self.kafka = kafka
        self.transaction_bound_seconds = transaction_bound_seconds
        self.topics = TopicNames(prefix)
        self.group_id = group_id
        self.signing_key_path = signing_key_path
        self.checkpoint_file = checkpoint_file
        self.policy = policy
        self.chain_partition = chain_partition
        self.max_batch = max_batch
        self.batch_wait_seconds = batch_wait_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._key = load_or_create_signing_key(signing_key_path)
        own = self._key.public_key()
        if trusted and key_id(own) not in trusted.key_ids:
            raise error_for(
                ErrorCode.SETTINGS_INVALID,
                f"the audit signing key {key_id(own)} is not among the pinned keys "
                "(RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS)",
            )
        # The writer trusts its own key besides the pinned ones (it holds the private key):
        # records it wrote before a restart are its own, and only those may be the head.
        self.trusted = (trusted or TrustedKeys()).with_key(own)
        self._source_keys = {self.topics[key]: key for key in AUDITED_TOPICS}
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self.lease_wait_seconds = lease_wait_seconds
        self._lease = ChainLease(
            kafka, self.audit_topic, chain_partition, lease_group_id(self.transactional_id)
        )
        self.state = ChainState.genesis(chain_partition)
        self._records_since_checkpoint = 0
        self._last_checkpoint_at = clock()
        self.records_written = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditAgent:
        """The deployment's audit agent (chain 0, group ``<group prefix>-audit``)."""
        return cls(
            kafka=KafkaClientConfig.from_settings(settings, client_id="radstream-audit"),
            prefix=settings.topic_prefix,
            group_id=f"{settings.consumer_group_prefix}-audit",
            signing_key_path=settings.audit.signing_key_file,
            checkpoint_file=checkpoint_file_for(
                settings.audit.checkpoint_file, TopicNames(settings.topic_prefix).audit
            ),
            policy=CheckpointPolicy.from_settings(settings.audit),
            batch_wait_seconds=settings.audit.batch_wait_seconds,
            trusted=TrustedKeys.parse(settings.audit.trusted_public_keys),
        )

    @property
    def name(self) -> str:
        """The loop's name in logs."""
        return f"audit-chain-{self.chain_partition}"

    @property
    def transactional_id(self) -> str:
        """One id per chain: a writer that lost the lease is fenced by its successor."""
        return f"{self.group_id}.audit-chain-{self.chain_partition}"

    @property
    def audit_topic(self) -> str:
        """The topic the chain is written to."""
        return self.topics.audit

    @property
    def writing(self) -> bool:
        """Whether this agent holds the chain's lease and writes it (else it stands by)."""
        return self._producer is not None

    @property
    def standing_by(self) -> bool:
        """Whether the lease group has placed this agent and another member holds the chain."""
        return self._lease.settled and not self._lease.held

    async def start(self) -> None:
        """Join the chain's lease; its holder opens the writer, the others stand by."""
        await self._lease.start()
        if await self._lease.acquire(self.lease_wait_seconds):
            await self._open_writer()
        else:
            log.info(
                "audit_agent_standing_by",
                chain_partition=self.chain_partition,
                lease_group=self._lease.group_id,
            )

    async def _open_writer(self) -> None:
        """Fence older writers, recover the chain head from the topic, then subscribe."""
        # The producer first: InitProducerId aborts a crashed predecessor's open transaction,
        # so the head read next (read_committed) is final.
        self._producer = build_producer(self.kafka, transactional_id=self.transactional_id)
        await self._producer.start()
        async with TopicReader(self.kafka) as reader:
            head = await recover_head(reader, self.audit_topic, self.chain_partition, self.trusted)
        self.state = head.state
        self._resync_checkpoint_file(head.last_checkpoint)
        covered = head.last_checkpoint.sequence if head.last_checkpoint else -1
        self._records_since_checkpoint = self.state.sequence - covered
        self._last_checkpoint_at = self._clock()
        self._consumer = build_consumer(
            self.kafka,
            *self._source_keys,
            group_id=self.group_id,
            # Static membership: a restarted agent (same chain, same id) takes its old place at
            # once instead of waiting a session timeout for the dead member to be evicted.
            group_instance_id=self.transactional_id,
            max_poll_records=self.max_batch,
            # The broker gathers the batch: a transaction per batch wait, not per message.
            gather_seconds=self.batch_wait_seconds,
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

    async def stop(self, *, clean: bool = True) -> None:
        """Stop; a clean stop first checkpoints the records written since the last checkpoint."""
        try:
            if clean and self._producer is not None and self._records_since_checkpoint > 0:
                await self._commit_checkpoint_only()
        finally:
            # The writer first: the lease is given up only when nothing of ours writes any more.
            try:
                await self._close_writer()
            finally:
                await self._lease.stop()

    async def _close_writer(self) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        await stop_all(consumer, producer)

    async def process_batch(self, timeout_ms: int = 500) -> int:
        """Audit one batch of source messages in one transaction; the number recorded.

        A standby only renews its group membership (waiting up to ``timeout_ms``) and takes
        over when the lease comes to it; a writer that lost the lease closes its writer.
        """
        # The short poll keeps a writer's membership alive; when the lease is not held (a
        # standby, or a rebalance under way) the agent waits for the group up to timeout_ms.
        if not await self._lease.renew(0) and not await self._lease.renew(timeout_ms):
            # A writer pauses during a rebalance and closes only when the chain went elsewhere.
            if self.writing and self._lease.settled:
                log.warning(
                    "audit_agent_lease_lost",
                    chain_partition=self.chain_partition,
                    action="closing the writer and standing by",
                )
                await self._close_writer()
            return 0
        if not self.writing:
            log.info("audit_agent_taking_over", chain_partition=self.chain_partition)
            await self._open_writer()
        consumer, producer = self._require()
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
        collected = [m for batch in batches.values() for m in batch]
        # One transaction per poll would be one per message at low rates (bench/README.md:
        # 633 transactions for 1,180 records at half rate). Gather for a short while instead;
        # the audit trail is not on any result's latency path.
        # Real time, not the injected checkpoint clock: this only bounds a wait.
        deadline = time.monotonic() + self.batch_wait_seconds
        while collected and len(collected) < self.max_batch:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=remaining_ms, max_records=self.max_batch - len(collected)
            )
            if not more:
                break  # nothing more arrived within the wait: commit what there is
            collected.extend(m for batch in more.values() for m in batch)
        messages = sorted(collected, key=lambda m: (m.topic, m.partition, m.offset))
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

    async def _record_batch(self, producer: KafkaProducer, messages: list[ConsumerRecord]) -> int:
        state = self.state
        since = self._records_since_checkpoint
        checkpoint_at = self._last_checkpoint_at
        checkpoints: list[AuditCheckpoint] = []
        outgoing: list[RawMessage] = []
        offsets: dict[TopicPartition, int] = {}
        for message in messages:
            record, state = append(state, self._draft(message))
            signature = sign_record(self._key, self.audit_topic, record)
            outgoing.append(record_message(self.audit_topic, record, signature))
            since += 1
            if self.policy.due(since, self._clock() - checkpoint_at):
                cp = sign_checkpoint(self._key, state, self._wall_clock())
                outgoing.append(checkpoint_message(self.audit_topic, cp))
                checkpoints.append(cp)
                since, checkpoint_at = 0, self._clock()
            offsets[TopicPartition(message.topic, message.partition)] = message.offset + 1

        async def transact() -> None:
            async with producer.transaction():
                await producer.send_all(outgoing)
                await producer.send_offsets_to_transaction(offsets, self.group_id)

        await finish_before_cancelling(transact(), bound=self.transaction_bound_seconds)
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

        async def transact() -> None:
            async with producer.transaction():
                await producer.send_all([checkpoint_message(self.audit_topic, cp)])

        await finish_before_cancelling(transact(), bound=self.transaction_bound_seconds)
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

    def _require(self) -> tuple[KafkaConsumer, KafkaProducer]:
        if self._consumer is None or self._producer is None:
            raise RuntimeError("the audit agent is not started")
        return self._consumer, self._producer
