"""Parsing audit-topic messages and table rows: records, checkpoints and damaged entries."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditCheckpoint, AuditRecord
from sinks.audit_sink import _parse_row
from streams.audit.verify import UnreadableRecord
from streams.audit_topic import CHECKPOINT, RECORD, RECORD_TYPE_HEADER, chain_key, parse_message
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


class TestParseRow:
    def test_row_record(self) -> None:
        """A stored JSON record parses back to the record."""
        record, _ = _record_and_checkpoint()
        assert _parse_row(record.model_dump(mode="json")) == record

    def test_damaged_row(self) -> None:
        """A stored record that no longer parses is unreadable with its sequence."""
        assert _parse_row({"sequence": 2}) == UnreadableRecord(2)

    def test_damaged_row_without_sequence(self) -> None:
        """A stored non-object is unreadable without a sequence."""
        assert _parse_row([1]) == UnreadableRecord(None)
