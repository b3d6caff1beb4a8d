"""The ``audit.log`` topic: its message format, reading it, recovering a chain head, verifying.

The audit topic holds two kinds of message, told apart by the ``radstream-record-type``
header: ``audit-record`` (an :class:`AuditRecord`) and ``audit-checkpoint`` (an
:class:`AuditCheckpoint`, published in the same transaction as the records it covers). Chain
``P`` lives in partition ``P``; the key is ``chain-P``. Every record carries the agent's
signature of its hash and topic (header ``radstream-record-signature``, ``<key_id>:<base64>``);
a record without a valid one from a trusted key was not written by the audit agent and is read
as a :class:`~streams.audit.verify.ForeignRecord` — kept out of the chain, quarantined. Every
read goes through the Kafka layer's :class:`~streams.kafka.TopicReader` (``read_committed``),
so records of aborted transactions are never seen.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from schemas.audit import (
    AUDIT_RECORD_TYPE_CHECKPOINT,
    AUDIT_RECORD_TYPE_HEADER,
    AUDIT_RECORD_TYPE_RECORD,
    AuditCheckpoint,
    AuditRecord,
)
from schemas.correlation import CORRELATION_ID_HEADER
from streams.audit.chain import ChainState
from streams.audit.checkpoints import (
    TrustedKeys,
    checkpoint_signature_valid,
    record_signature_valid,
)
from streams.audit.files import read_checkpoint_file
from streams.audit.verify import ForeignRecord, UnreadableRecord, VerificationReport, verify_chains
from streams.kafka import ConsumerRecord, KafkaClientConfig, RawMessage, TopicReader

RECORD_TYPE_HEADER = AUDIT_RECORD_TYPE_HEADER
RECORD = AUDIT_RECORD_TYPE_RECORD.encode()
CHECKPOINT = AUDIT_RECORD_TYPE_CHECKPOINT.encode()
RECORD_SIGNATURE_HEADER = "radstream-record-signature"

UNREADABLE = "unreadable message"

TopicItem = AuditRecord | AuditCheckpoint | ForeignRecord


def chain_key(chain_partition: int) -> bytes:
    """The message key of every message of one chain."""
    return f"chain-{chain_partition}".encode()


def record_message(topic: str, record: AuditRecord, signature: str) -> RawMessage:
    """The audit-topic message of one record, with the writer's signature of it (and the
    correlation id as a header, when it has one)."""
    headers = [(RECORD_TYPE_HEADER, RECORD), (RECORD_SIGNATURE_HEADER, signature.encode())]
    if record.correlation_id:
        headers.append((CORRELATION_ID_HEADER, record.correlation_id.encode()))
    return RawMessage(
        topic,
        chain_key(record.chain_partition),
        record.model_dump_json().encode(),
        tuple(headers),
        partition=record.chain_partition,
    )


def checkpoint_message(topic: str, checkpoint: AuditCheckpoint) -> RawMessage:
    """The audit-topic message of one signed checkpoint."""
    return RawMessage(
        topic,
        chain_key(checkpoint.chain_partition),
        checkpoint.model_dump_json().encode(),
        ((RECORD_TYPE_HEADER, CHECKPOINT),),
        partition=checkpoint.chain_partition,
    )


@dataclass
class PartitionContent:
    """What one audit partition holds, in offset order."""

    records: list[AuditRecord | ForeignRecord] = field(default_factory=list)
    checkpoints: list[AuditCheckpoint] = field(default_factory=list)

    @classmethod
    def of(cls, messages: Iterable[ConsumerRecord], trusted: TrustedKeys) -> PartitionContent:
        """Sort consumed messages into records (genuine, unreadable or foreign) and checkpoints."""
        content = cls()
        for message in messages:
            item = classify_message(message, trusted)
            if isinstance(item, AuditCheckpoint):
                content.checkpoints.append(item)
            else:
                content.records.append(item)
        return content


def _header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def _record_type(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    return _header(headers, RECORD_TYPE_HEADER)


def classify_message(message: ConsumerRecord, trusted: TrustedKeys) -> TopicItem:
    """One audit-topic message: a genuine record, a checkpoint, or foreign.

    A record is genuine only when a trusted key signed its hash for this topic (and its hash
    is its content's): anything else on the topic was written by someone other than the agent.
    """
    item = parse_message(message.value, message.headers)
    if isinstance(item, UnreadableRecord):
        # The agent writes only valid records: an unreadable message is someone else's.
        return ForeignRecord(sequence=item.sequence, offset=message.offset, reason=UNREADABLE)
    if isinstance(item, AuditCheckpoint):
        return item
    raw = _header(message.headers, RECORD_SIGNATURE_HEADER)
    signature = raw.decode("ascii", errors="replace") if raw is not None else None
    if record_signature_valid(signature, message.topic, item, trusted):
        return item
    reason = "unsigned record" if signature is None else "record signature does not verify"
    return ForeignRecord(sequence=item.sequence, offset=message.offset, reason=reason)


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


async def read_audit_topic(
    config: KafkaClientConfig, topic: str, trusted: TrustedKeys
) -> dict[int, PartitionContent]:
    """Everything committed on the audit topic, per partition (records judged by ``trusted``)."""
    async with TopicReader(config) as reader:
        content = await reader.read_to_end(topic)
    return {p: PartitionContent.of(messages, trusted) for p, messages in content.records.items()}


@dataclass(frozen=True, slots=True)
class RecoveredHead:
    """A chain's state as stored on the topic, and its last published checkpoint."""

    state: ChainState
    last_checkpoint: AuditCheckpoint | None


async def recover_head(
    reader: TopicReader,
    topic: str,
    chain_partition: int,
    trusted: TrustedKeys,
    *,
    window: int = 64,
) -> RecoveredHead:
    """Read the last committed genuine record (and checkpoint) of a chain from the topic itself.

    Reads backwards in growing windows from the last stable offset, because transaction
    markers and checkpoints sit between records, so the last record is not at ``end - 1``.
    Foreign records and checkpoints whose signature does not verify are skipped: a forged
    record appended to the topic must never become the head the agent continues from.
    """
    beginning, end = (await reader.bounds(topic)).get(chain_partition, (0, 0))
    last_record: AuditRecord | None = None
    last_checkpoint: AuditCheckpoint | None = None
    upper = end
    while upper > beginning and last_record is None:
        lower = max(beginning, upper - window)
        messages = (await reader.read(topic, {chain_partition: (lower, upper)}))[chain_partition]
        content = PartitionContent.of(messages, trusted)
        records = [r for r in content.records if isinstance(r, AuditRecord)]
        if records:
            last_record = records[-1]
        genuine = [cp for cp in content.checkpoints if checkpoint_signature_valid(cp, trusted)]
        if last_checkpoint is None and genuine:
            last_checkpoint = genuine[-1]
        upper, window = lower, window * 4
    state = (
        ChainState.after(last_record)
        if last_record is not None
        else ChainState.genesis(chain_partition)
    )
    return RecoveredHead(state, last_checkpoint)


async def verify_topic(
    config: KafkaClientConfig,
    topic: str,
    checkpoint_file: Path,
    trusted: TrustedKeys,
    *,
    max_uncovered: int | None = None,
) -> VerificationReport:
    """Verify every chain on the audit topic against the checkpoint file and in-topic ones.

    The checkpoint file is the authority against truncation (it lives outside the topic);
    checkpoints found on the topic are verified too. Records and checkpoints are judged by the
    pinned ``trusted`` keys only, never by a key file beside the store. With
    ``max_uncovered`` (the checkpoint interval), a chain with more records after its newest
    genuine checkpoint fails: its checkpoints were deleted.
    """
    file = read_checkpoint_file(checkpoint_file)
    content = await read_audit_topic(config, topic, trusted)
    in_topic = [cp for part in content.values() for cp in part.checkpoints]
    chains = {partition: part.records for partition, part in content.items()}
    return verify_chains(
        chains,
        [*file.checkpoints, *in_topic],
        trusted,
        max_uncovered=max_uncovered,
        malformed_checkpoint_lines=file.malformed_lines,
    )


def trail_of(
    records: Iterable[AuditRecord | UnreadableRecord | ForeignRecord], event_id: uuid.UUID
) -> list[AuditRecord]:
    """The records about one image (its event id), in chain order."""
    trail = [r for r in records if isinstance(r, AuditRecord) and r.object.event_id == event_id]
    return sorted(trail, key=lambda r: (r.chain_partition, r.sequence))


async def trail_for_event(
    config: KafkaClientConfig, topic: str, event_id: uuid.UUID, trusted: TrustedKeys
) -> list[AuditRecord]:
    """Every genuine audit record about one image (its event id) on the topic, in chain order."""
    content = await read_audit_topic(config, topic, trusted)
    return trail_of((r for part in content.values() for r in part.records), event_id)
