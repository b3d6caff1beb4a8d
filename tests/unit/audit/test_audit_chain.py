"""Canonical bytes, record hashes and appending to the chain."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
from pydantic import ValidationError

from schemas.audit import GENESIS_HASH, AuditRecord
from streams.audit.chain import (
    ChainState,
    append,
    append_all,
    canonical_bytes,
    canonical_json,
    hash_is_valid,
    record_hash,
)
from tests.unit.audit.factories import drafts

pytestmark = pytest.mark.requirement("RS-AUD-02")


class TestCanonicalBytes:
    def test_keys_sorted_compact_utf8(self) -> None:
        """Keys are sorted at every level, without whitespace, non-ASCII kept as UTF-8."""
        assert (
            canonical_json({"b": 1, "a": {"d": "é", "c": 2}})
            == '{"a":{"c":2,"d":"é"},"b":1}'.encode()
        )

    def test_nan_refused(self) -> None:
        """NaN has no canonical JSON form, so it is refused."""
        with pytest.raises(ValueError, match="JSON"):
            canonical_json({"x": float("nan")})

    def test_excludes_hash_includes_prev_hash(self) -> None:
        """The bytes leave out ``hash`` but include ``prev_hash`` and ``sequence``."""
        record, _ = append(ChainState.genesis(0), drafts(1)[0])
        data = json.loads(canonical_bytes(record))
        assert "hash" not in data
        assert data["prev_hash"] == GENESIS_HASH
        assert data["sequence"] == 0

    def test_dict_and_model_agree(self) -> None:
        """The JSON form of a record read back gives the same bytes as the model."""
        record, _ = append(ChainState.genesis(0), drafts(1)[0])
        assert canonical_bytes(json.loads(record.model_dump_json())) == canonical_bytes(record)


class TestAppend:
    def test_genesis_record(self) -> None:
        """The first record has sequence 0 and the all-zero prev_hash."""
        record, state = append(ChainState.genesis(3), drafts(1)[0])
        assert (record.sequence, record.prev_hash, record.chain_partition) == (0, "0" * 64, 3)
        assert state == ChainState(3, 0, record.hash)

    def test_hash_is_sha256_of_canonical_bytes(self) -> None:
        """``hash`` is the SHA-256 hex digest of the canonical bytes."""
        record, _ = append(ChainState.genesis(0), drafts(1)[0])
        assert record.hash == hashlib.sha256(canonical_bytes(record)).hexdigest()
        assert hash_is_valid(record)

    def test_links_to_predecessor(self) -> None:
        """Each record's prev_hash is its predecessor's hash and sequences step by one."""
        records, state = append_all(ChainState.genesis(0), drafts(4))
        for before, after in itertools.pairwise(records):
            assert after.prev_hash == before.hash
            assert after.sequence == before.sequence + 1
        assert state.head_hash == records[-1].hash
        assert state.next_sequence == 4

    def test_resume_from_stored_head(self) -> None:
        """A chain resumed from its last stored record continues without gap."""
        records, _ = append_all(ChainState.genesis(0), drafts(2))
        record, _ = append(ChainState.after(records[-1]), drafts(3)[2])
        assert record.sequence == 2
        assert record.prev_hash == records[-1].hash

    def test_edit_changes_hash(self) -> None:
        """Changing any field makes the stored hash stale."""
        record, _ = append(ChainState.genesis(0), drafts(1)[0])
        edited = record.model_copy(update={"correlation_id": "other"})
        assert not hash_is_valid(edited)
        assert record_hash(edited) != record.hash

    def test_record_is_frozen(self) -> None:
        """Records cannot be changed in place."""
        record, _ = append(ChainState.genesis(0), drafts(1)[0])
        with pytest.raises(ValidationError):
            record.sequence = 9  # type: ignore[misc]

    def test_record_refuses_unknown_fields(self) -> None:
        """A record with an extra field (e.g. smuggled patient data) does not parse."""
        record, _ = append(ChainState.genesis(0), drafts(1)[0])
        data = record.model_dump(mode="json") | {"patient_name": "X"}
        with pytest.raises(ValidationError):
            AuditRecord.model_validate(data)
