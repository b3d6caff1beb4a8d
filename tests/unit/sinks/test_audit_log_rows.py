"""Rows of the append-only audit table read back: records and damaged entries."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditRecord
from sinks.repositories import _audit_row
from streams.audit.verify import UnreadableRecord
from tests.unit.audit.factories import build_chain


def _record() -> AuditRecord:
    records, _ = build_chain(1, Ed25519PrivateKey.generate(), every=5)
    return records[0]


class TestParseRow:
    def test_row_record(self) -> None:
        """A stored JSON record parses back to the record."""
        record = _record()
        assert _audit_row(record.model_dump(mode="json")) == record

    def test_damaged_row(self) -> None:
        """A stored record that no longer parses is unreadable with its sequence."""
        assert _audit_row({"sequence": 2}) == UnreadableRecord(2)

    def test_damaged_row_without_sequence(self) -> None:
        """A stored non-object is unreadable without a sequence."""
        assert _audit_row([1]) == UnreadableRecord(None)
