"""The hash chain: canonical bytes, record hashes and appending drafts to a chain.

Canonical bytes of a record are its JSON form (pydantic ``mode="json"``: UUIDs as strings,
datetimes as ISO 8601 in UTC, enums as their values) **without** the ``hash`` field, with keys
sorted at every level, no whitespace (``","`` and ``":"`` separators), non-ASCII kept as UTF-8
and NaN refused. ``hash = SHA-256(canonical bytes)``, hex; the bytes include ``prev_hash``,
``sequence`` and ``chain_partition``, so a record cannot be edited, moved or renumbered without
its hash (or its successor's link) failing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from schemas.audit import GENESIS_HASH, AuditDraft, AuditRecord


def canonical_json(data: dict[str, Any]) -> bytes:
    """Sorted-key compact UTF-8 JSON: the one byte form that is hashed or signed."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_bytes(record: AuditRecord | dict[str, Any]) -> bytes:
    """The canonical bytes of ``record`` without its ``hash`` field."""
    data = record.model_dump(mode="json") if isinstance(record, AuditRecord) else dict(record)
    data.pop("hash", None)
    return canonical_json(data)


def record_hash(record: AuditRecord | dict[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical bytes, which include ``prev_hash``."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def hash_is_valid(record: AuditRecord) -> bool:
    """Whether ``record.hash`` is the hash of its own content."""
    return record.hash == record_hash(record)


@dataclass(frozen=True, slots=True)
class ChainState:
    """The head of one chain: the last sequence written (-1 when empty) and its hash."""

    chain_partition: int
    sequence: int = -1
    head_hash: str = GENESIS_HASH

    @classmethod
    def genesis(cls, chain_partition: int) -> ChainState:
        """The state of an empty chain."""
        return cls(chain_partition=chain_partition)

    @classmethod
    def after(cls, record: AuditRecord) -> ChainState:
        """The state right after ``record`` (used to resume a chain from its stored head)."""
        return cls(record.chain_partition, record.sequence, record.hash)

    @property
    def next_sequence(self) -> int:
        """The sequence number the next record gets."""
        return self.sequence + 1


def append(state: ChainState, draft: AuditDraft) -> tuple[AuditRecord, ChainState]:
    """Place ``draft`` on the chain after ``state``: the new record and the new head."""
    fields = draft.model_dump(mode="json")
    fields.update(
        schema_version=1,
        chain_partition=state.chain_partition,
        sequence=state.next_sequence,
        prev_hash=state.head_hash,
    )
    digest = hashlib.sha256(canonical_json(fields)).hexdigest()
    record = AuditRecord.model_validate({**fields, "hash": digest})
    return record, ChainState(state.chain_partition, record.sequence, digest)


def append_all(state: ChainState, drafts: list[AuditDraft]) -> tuple[list[AuditRecord], ChainState]:
    """Append several drafts in order."""
    records: list[AuditRecord] = []
    for draft in drafts:
        record, state = append(state, draft)
        records.append(record)
    return records, state
