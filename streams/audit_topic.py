"""Reading the ``audit.log`` topic: chain head recovery, verification and one image's trail.

The audit topic holds two kinds of message, told apart by the ``radstream-record-type``
header: ``audit-record`` (an :class:`AuditRecord`) and ``audit-checkpoint`` (an
:class:`AuditCheckpoint`, published in the same transaction as the records it covers). Chain
``P`` lives in partition ``P``; the key is ``chain-P``. Every read here is ``read_committed``,
so records of aborted transactions are never seen.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.audit import AuditCheckpoint, AuditRecord
from streams.audit.chain import ChainState
from streams.audit.files import load_public_key, read_checkpoints
from streams.audit.verify import (
    UnreadableRecord,
    VerificationReport,
    merge_reports,
    verify_chain,
)

RECORD_TYPE_HEADER = "radstream-record-type"
RECORD = b"audit-record"
CHECKPOINT = b"audit-checkpoint"
# A read that makes no progress this long fails, so a CLI or test never hangs on a broker that
# stops answering; a long log that keeps arriving may take as long as it needs.
READ_STALL_SECONDS = 30.0


def chain_key(chain_partition: int) -> bytes:
    """The message key of every message of one chain."""
    return f"chain-{chain_partition}".encode()


@dataclass
class PartitionContent:
    """What one audit partition holds, in offset order."""

    records: list[AuditRecord | UnreadableRecord] = field(default_factory=list)
    checkpoints: list[AuditCheckpoint] = field(default_factory=list)


def _record_type(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    for key, value in headers or ():
        if key == RECORD_TYPE_HEADER:
            return value
    return None


def parse_message(
    value: bytes | None, headers: Iterable[tuple[str, bytes]] | None
) -> AuditRecord | AuditCheckpoint | UnreadableRecord:
    """One audit-topic message as a record, a checkpoint, or unreadable (tampered)."""
    try:
        if _record_type(headers) == CHECKPOINT:
            return AuditCheckpoint.model_validate_json(value or b"")
        return AuditRecord.model_validate_json(value or b"")
    except ValidationError:
        return UnreadableRecord(sequence=_sequence_of(value))


def _sequence_of(value: bytes | None) -> int | None:
    """The ``sequence`` of a damaged record if it can still be read, for the report."""
    try:
        data = json.loads(value or b"")
    except ValueError:
        return None
    sequence = data.get("sequence") if isinstance(data, dict) else None
    return sequence if isinstance(sequence, int) and sequence >= 0 else None


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions from fresh metadata (none when the topic does not exist)."""
    # aiokafka has no public "describe this topic" on the consumer; the client's metadata
    # fetch is what partitions_for_topic would need to have been primed with.
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


async def _read_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> PartitionContent:
    """Every committed message of ``tp`` in ``[start, end)``, in offset order."""
    content = PartitionContent()
    consumer.assign([tp])
    consumer.seek(tp, start)
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=200)
        messages = batch.get(tp, [])
        if messages:
            last_progress = loop.time()
        elif loop.time() - last_progress > READ_STALL_SECONDS:
            raise TimeoutError(
                f"no progress reading {tp.topic}[{tp.partition}] for {READ_STALL_SECONDS} s"
            )
        for message in messages:
            if message.offset >= end:
                break
            item = parse_message(message.value, message.headers)
            if isinstance(item, AuditCheckpoint):
                content.checkpoints.append(item)
            else:
                content.records.append(item)
    return content


async def read_audit_topic(bootstrap: str, topic: str) -> dict[int, PartitionContent]:
    """Everything committed on the audit topic, per partition."""
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        result: dict[int, PartitionContent] = {}
        tps = await _partitions(consumer, topic)
        ends = await consumer.end_offsets(tps) if tps else {}
        for tp in tps:
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            result[tp.partition] = await _read_range(consumer, tp, beginning, ends[tp])
        return result
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class RecoveredHead:
    """A chain's state as stored on the topic, and its last published checkpoint."""

    state: ChainState
    last_checkpoint: AuditCheckpoint | None


async def recover_head(
    bootstrap: str, topic: str, chain_partition: int, *, window: int = 64
) -> RecoveredHead:
    """Read the last committed record (and checkpoint) of a chain from the topic itself.

    Reads backwards in growing windows from the last stable offset, because transaction
    markers and checkpoints sit between records, so the last record is not at ``end - 1``.
    """
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, chain_partition)
        end = (await consumer.end_offsets([tp]))[tp]
        beginning = (await consumer.beginning_offsets([tp]))[tp]
        last_record: AuditRecord | None = None
        last_checkpoint: AuditCheckpoint | None = None
        upper = end
        while upper > beginning and last_record is None:
            lower = max(beginning, upper - window)
            content = await _read_range(consumer, tp, lower, upper)
            records = [r for r in content.records if isinstance(r, AuditRecord)]
            if records:
                last_record = records[-1]
            if last_checkpoint is None and content.checkpoints:
                last_checkpoint = content.checkpoints[-1]
            upper, window = lower, window * 4
        state = (
            ChainState.after(last_record)
            if last_record is not None
            else ChainState.genesis(chain_partition)
        )
        return RecoveredHead(state, last_checkpoint)
    finally:
        await consumer.stop()


def _unique(checkpoints: Iterable[AuditCheckpoint]) -> list[AuditCheckpoint]:
    seen: set[str] = set()
    out: list[AuditCheckpoint] = []
    for cp in checkpoints:
        key = cp.model_dump_json()
        if key not in seen:
            seen.add(key)
            out.append(cp)
    return out


async def verify_topic(
    bootstrap: str, topic: str, checkpoint_file: Path, public_key_path: Path
) -> VerificationReport:
    """Verify every chain on the audit topic against the checkpoint file and in-topic ones.

    The checkpoint file is the authority against truncation (it lives outside the topic);
    checkpoints found on the topic are verified too.
    """
    public_key = load_public_key(public_key_path)
    file_checkpoints = read_checkpoints(checkpoint_file)
    content = await read_audit_topic(bootstrap, topic)
    partitions = sorted(set(content) | {cp.chain_partition for cp in file_checkpoints})
    reports = []
    for partition in partitions:
        part = content.get(partition, PartitionContent())
        checkpoints = _unique([*file_checkpoints, *part.checkpoints])
        reports.append(
            verify_chain(part.records, checkpoints, public_key, chain_partition=partition)
        )
    return merge_reports(reports)


async def trail_for_event(bootstrap: str, topic: str, event_id: uuid.UUID) -> list[AuditRecord]:
    """Every audit record about one image (its event id), in chain order."""
    content = await read_audit_topic(bootstrap, topic)
    trail = [
        record
        for part in content.values()
        for record in part.records
        if isinstance(record, AuditRecord) and record.object.event_id == event_id
    ]
    return sorted(trail, key=lambda r: (r.chain_partition, r.sequence))
