"""Audit-topic messages: building and parsing records, checkpoints and damaged entries."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.audit import AuditCheckpoint, AuditRecord
from streams.audit.checkpoints import TrustedKeys, sign_record
from streams.audit.io.topic import (
    CHECKPOINT,
    RECORD,
    RECORD_SIGNATURE_HEADER,
    RECORD_TYPE_HEADER,
    chain_key,
    checkpoint_message,
    classify_message,
    parse_message,
    record_message,
)
from streams.audit.verify import ForeignRecord, UnreadableRecord
from streams.kafka import ConsumerRecord
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
        message = record_message("p.audit.log", record, "sig")
        assert (message.topic, message.key, message.partition) == ("p.audit.log", b"chain-0", 0)
        assert message.headers[0] == (RECORD_TYPE_HEADER, RECORD)
        assert message.headers[1] == (RECORD_SIGNATURE_HEADER, b"sig")
        assert parse_message(message.value, message.headers) == record

    def test_record_without_correlation_id_has_no_correlation_header(self) -> None:
        """No empty correlation header is invented for a record without one."""
        record, _ = _record_and_checkpoint()
        bare = record.model_copy(update={"correlation_id": None})
        assert record_message("t", bare, "s").headers == (
            (RECORD_TYPE_HEADER, RECORD),
            (RECORD_SIGNATURE_HEADER, b"s"),
        )

    def test_checkpoint_message(self) -> None:
        """A checkpoint travels typed as a checkpoint on its chain's partition."""
        _, checkpoint = _record_and_checkpoint()
        message = checkpoint_message("t", checkpoint)
        assert message.partition == checkpoint.chain_partition
        assert parse_message(message.value, message.headers) == checkpoint


KEY = Ed25519PrivateKey.generate()
TRUSTED = TrustedKeys.of(KEY.public_key())
TOPIC = "p.audit.log"


def _consumed(
    value: bytes | None, headers: list[tuple[str, bytes]], topic: str = TOPIC
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, 41, 0, 0, b"chain-0", value, None, 7, -1, headers)


def _signed(
    record: AuditRecord, key: Ed25519PrivateKey = KEY, topic: str = TOPIC
) -> ConsumerRecord[bytes, bytes]:
    message = record_message(topic, record, sign_record(key, topic, record))
    return _consumed(message.value, list(message.headers))


@pytest.mark.requirement("RS-AUD-06")
class TestClassify:
    """Only what the audit agent signed is a record; everything else on the topic is foreign."""

    def test_signed_record_is_genuine(self) -> None:
        """A record signed by a trusted key for this topic is the agent's."""
        record, _ = _record_and_checkpoint()
        assert classify_message(_signed(record), TRUSTED) == record

    def test_unsigned_record_is_foreign(self) -> None:
        """A correctly chained record without a signature was written by someone else."""
        record, _ = _record_and_checkpoint()
        consumed = _consumed(record.model_dump_json().encode(), [(RECORD_TYPE_HEADER, RECORD)])
        assert classify_message(consumed, TRUSTED) == ForeignRecord(
            record.sequence, 41, "unsigned record"
        )

    def test_record_signed_by_another_key_is_foreign(self) -> None:
        """A signature by a key that is not pinned does not make a record genuine."""
        record, _ = _record_and_checkpoint()
        item = classify_message(_signed(record, Ed25519PrivateKey.generate()), TRUSTED)
        assert isinstance(item, ForeignRecord)
        assert item.reason == "record signature does not verify"

    def test_record_signed_for_another_topic_is_foreign(self) -> None:
        """A genuine record copied from another audit topic does not verify here."""
        record, _ = _record_and_checkpoint()
        message = record_message(TOPIC, record, sign_record(KEY, "other.audit.log", record))
        consumed = _consumed(message.value, list(message.headers))
        assert isinstance(classify_message(consumed, TRUSTED), ForeignRecord)

    def test_edited_record_keeping_the_signature_is_foreign(self) -> None:
        """Changing a field after signing breaks the hash, so the signature no longer vouches."""
        record, _ = _record_and_checkpoint()
        signature = sign_record(KEY, TOPIC, record)
        edited = record.model_copy(update={"correlation_id": "f" * 32})
        message = record_message(TOPIC, edited, signature)
        consumed = _consumed(message.value, list(message.headers))
        assert isinstance(classify_message(consumed, TRUSTED), ForeignRecord)

    def test_garbage_signature_is_foreign(self) -> None:
        """A signature header that is not ``key_id:base64`` is simply not valid."""
        record, _ = _record_and_checkpoint()
        headers = [(RECORD_TYPE_HEADER, RECORD), (RECORD_SIGNATURE_HEADER, b"\xff:!!")]
        consumed = _consumed(record.model_dump_json().encode(), headers)
        assert isinstance(classify_message(consumed, TRUSTED), ForeignRecord)

    def test_checkpoints_pass_and_garbage_is_foreign(self) -> None:
        """Checkpoints are judged by verification; unreadable bytes are never the agent's."""
        _, checkpoint = _record_and_checkpoint()
        message = checkpoint_message(TOPIC, checkpoint)
        consumed = _consumed(message.value, list(message.headers))
        assert classify_message(consumed, TRUSTED) == checkpoint
        assert classify_message(_consumed(b"junk", []), TRUSTED) == ForeignRecord(
            None, 41, "unreadable message"
        )
