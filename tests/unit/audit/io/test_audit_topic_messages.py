"""Audit-topic messages: building and parsing records, checkpoints and damaged entries."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditCheckpoint, AuditRecord
from streams.audit.io.topic import (
    CHECKPOINT,
    RECORD,
    RECORD_TYPE_HEADER,
    chain_key,
    checkpoint_message,
    parse_message,
    record_message,
)
from streams.audit.verify import UnreadableRecord
from tests.unit.audit.factories import build_chain

pytestmark = pytest.mark.requirement("RS-AUD-05")


def _record_and_checkpoint() -> tuple[AuditRecord, AuditCheckpoint]:
    records, checkpoints = build_chain(5, Ed25519PrivateKey.generate(), every=5)
    return records[0], checkpoints[0]


class TestParseMessage:
    def test_record(self) -> None:
        """A record message parses to the record."""
        record, _ = _record_and_checkpoint()
        value = record.model_dump_json().encode()
        assert parse_message(value, [(RECORD_TYPE_HEADER, RECORD)]) == record

    def test_checkpoint(self) -> None:
        """A message with the checkpoint header parses to the checkpoint."""
        _, checkpoint = _record_and_checkpoint()
        value = checkpoint.model_dump_json().encode()
        assert parse_message(value, [(RECORD_TYPE_HEADER, CHECKPOINT)]) == checkpoint

    def test_damaged_record_keeps_its_sequence(self) -> None:
        """A record that no longer parses is unreadable, with its sequence when still legible."""
        assert parse_message(b'{"sequence": 4, "x": 1}', None) == UnreadableRecord(4)

    def test_garbage_has_no_sequence(self) -> None:
        """Bytes that are not JSON are unreadable without a sequence."""
        assert parse_message(b"\xff not json", None) == UnreadableRecord(None)

    def test_non_object_json_has_no_sequence(self) -> None:
        """A JSON array is unreadable without a sequence."""
        assert parse_message(b"[1, 2]", None) == UnreadableRecord(None)

    def test_chain_key(self) -> None:
        """Messages of chain 3 are keyed chain-3."""
        assert chain_key(3) == b"chain-3"


class TestMessages:
    def test_record_message(self) -> None:
        """A record goes to its chain's partition, keyed by chain, typed, with its correlation."""
        record, _ = _record_and_checkpoint()
        message = record_message("p.audit.log", record)
        assert (message.topic, message.key, message.partition) == ("p.audit.log", b"chain-0", 0)
        assert message.headers[0] == (RECORD_TYPE_HEADER, RECORD)
        assert parse_message(message.value, message.headers) == record

    def test_record_without_correlation_id_has_only_the_type_header(self) -> None:
        """No empty correlation header is invented for a record without one."""
        record, _ = _record_and_checkpoint()
        bare = record.model_copy(update={"correlation_id": None})
        assert record_message("t", bare).headers == ((RECORD_TYPE_HEADER, RECORD),)

    def test_checkpoint_message(self) -> None:
        """A checkpoint travels typed as a checkpoint on its chain's partition."""
        _, checkpoint = _record_and_checkpoint()
        message = checkpoint_message("t", checkpoint)
        assert message.partition == checkpoint.chain_partition
        assert parse_message(message.value, message.headers) == checkpoint
