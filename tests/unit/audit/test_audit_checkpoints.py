"""Checkpoint signing, the checkpoint policy and the key and checkpoint files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from schemas.audit import LEGACY_AUDIT_TOPIC
from schemas.settings import AuditSettings, Settings
from streams.audit.chain import ChainState
from streams.audit.checkpoints import (
    CheckpointPolicy,
    TrustedKeys,
    checkpoint_signature_valid,
    encode_public_key,
    key_id,
    record_signature_valid,
    sign_checkpoint,
    sign_record,
)
from streams.audit.files import (
    KeyFileError,
    append_checkpoint,
    append_checkpoints,
    checkpoint_file_for,
    load_or_create_signing_key,
    load_public_key,
    read_checkpoint_file,
    read_checkpoints,
    write_public_key,
)
from streams.topics import TopicNames
from tests.unit.audit.factories import T0, build_chain

pytestmark = pytest.mark.requirement("RS-AUD-03")

STATE = ChainState(0, 9, "b" * 64)


class TestSigning:
    def test_key_id_is_sha256_prefix_of_raw_public_key(self) -> None:
        """The key id is the first 16 hex digits of SHA-256 of the raw public bytes."""
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert key_id(key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]

    def test_signed_checkpoint_verifies(self) -> None:
        """A checkpoint verifies with the signer's public key and records the head."""
        key = Ed25519PrivateKey.generate()
        cp = sign_checkpoint(key, STATE, T0)
        assert (cp.sequence, cp.head_hash) == (9, "b" * 64)
        assert checkpoint_signature_valid(cp, key.public_key())

    def test_other_key_does_not_verify(self) -> None:
        """A checkpoint signed by another key is refused."""
        cp = sign_checkpoint(Ed25519PrivateKey.generate(), STATE, T0)
        assert not checkpoint_signature_valid(cp, Ed25519PrivateKey.generate().public_key())

    def test_forged_key_id_does_not_verify(self) -> None:
        """Another key's signature under our key id is refused."""
        ours = Ed25519PrivateKey.generate()
        forged = sign_checkpoint(Ed25519PrivateKey.generate(), STATE, T0).model_copy(
            update={"key_id": key_id(ours.public_key())}
        )
        assert not checkpoint_signature_valid(forged, ours.public_key())

    def test_edited_checkpoint_does_not_verify(self) -> None:
        """Moving a signed checkpoint to another sequence breaks its signature."""
        key = Ed25519PrivateKey.generate()
        cp = sign_checkpoint(key, STATE, T0).model_copy(update={"sequence": 20})
        assert not checkpoint_signature_valid(cp, key.public_key())

    def test_garbage_signature_does_not_verify(self) -> None:
        """A signature of the wrong length is refused, not an exception."""
        key = Ed25519PrivateKey.generate()
        cp = sign_checkpoint(key, STATE, T0).model_copy(update={"signature": "AAAA"})
        assert not checkpoint_signature_valid(cp, key.public_key())

    def test_empty_chain_has_no_checkpoint(self) -> None:
        """An empty chain cannot be checkpointed."""
        with pytest.raises(ValueError, match="empty"):
            sign_checkpoint(Ed25519PrivateKey.generate(), ChainState.genesis(0), T0)


class TestPolicy:
    def test_due_after_records(self) -> None:
        """A checkpoint is due after every_records new records."""
        assert CheckpointPolicy(3, 60).due(3, 0.0)
        assert not CheckpointPolicy(3, 60).due(2, 0.0)

    def test_due_after_seconds(self) -> None:
        """A checkpoint is due after every_seconds if anything was written."""
        assert CheckpointPolicy(100, 1.0).due(1, 1.5)

    def test_never_due_without_new_records(self) -> None:
        """Nothing new, no checkpoint, however long it has been."""
        assert not CheckpointPolicy(1, 1.0).due(0, 99.0)

    def test_from_settings(self) -> None:
        """The policy takes AuditSettings' numbers."""
        settings = AuditSettings(checkpoint_every_records=7, checkpoint_every_seconds=2.5)
        assert CheckpointPolicy.from_settings(settings) == CheckpointPolicy(7, 2.5)

    def test_invalid_policy_refused(self) -> None:
        """Zero records or seconds is refused."""
        with pytest.raises(ValueError, match="every_records"):
            CheckpointPolicy(0, 1.0)


class TestKeyFile:
    def test_created_0600_and_reloaded(self, tmp_path: Path) -> None:
        """A missing key is created with mode 0600 and the same key loads next time."""
        path = tmp_path / "keys" / "signing.pem"
        key = load_or_create_signing_key(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert key_id(load_or_create_signing_key(path).public_key()) == key_id(key.public_key())

    def test_world_readable_key_refused(self, tmp_path: Path) -> None:
        """A key file readable by others is refused: anyone could forge checkpoints."""
        path = tmp_path / "signing.pem"
        load_or_create_signing_key(path)
        os.chmod(path, 0o644)
        with pytest.raises(KeyFileError, match="0600"):
            load_or_create_signing_key(path)

    def test_wrong_key_type_refused(self, tmp_path: Path) -> None:
        """A PEM holding a non-Ed25519 key is refused."""
        path = tmp_path / "x.pem"
        pem = X25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        path.write_bytes(pem)
        path.chmod(0o600)
        with pytest.raises(KeyFileError, match="Ed25519"):
            load_or_create_signing_key(path)
        with pytest.raises(KeyFileError, match="Ed25519"):
            load_public_key(path)

    def test_public_key_from_private_or_public_pem(self, tmp_path: Path) -> None:
        """The verifier's key loads from the private PEM or an exported public PEM."""
        key = load_or_create_signing_key(tmp_path / "k.pem")
        write_public_key(key.public_key(), tmp_path / "pub" / "k.pub.pem")
        want = key_id(key.public_key())
        assert key_id(load_public_key(tmp_path / "k.pem")) == want
        assert key_id(load_public_key(tmp_path / "pub" / "k.pub.pem")) == want

    def test_wrong_public_key_type_refused(self, tmp_path: Path) -> None:
        """A public PEM of another algorithm is refused."""
        path = tmp_path / "x.pub.pem"
        pub = X25519PrivateKey.generate().public_key()
        path.write_bytes(pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        with pytest.raises(KeyFileError, match="Ed25519"):
            load_public_key(path)


class TestCheckpointFile:
    def test_append_and_read_back(self, tmp_path: Path) -> None:
        """Checkpoints appended as JSON lines read back equal and in order."""
        key = Ed25519PrivateKey.generate()
        cps = [sign_checkpoint(key, ChainState(0, n, "c" * 64), T0) for n in (4, 9)]
        path = tmp_path / "state" / "checkpoints.jsonl"
        append_checkpoint(path, cps[0])
        append_checkpoints(path, cps[1:])
        assert read_checkpoints(path) == cps
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_absent_file_has_none(self, tmp_path: Path) -> None:
        """No file means no checkpoints."""
        assert read_checkpoints(tmp_path / "none.jsonl") == []

    def test_each_audit_topic_has_its_own_file(self, tmp_path: Path) -> None:
        """The default prefix's chain keeps the configured file; another prefix's its own."""
        configured = tmp_path / "checkpoints.jsonl"
        legacy = TopicNames(Settings.model_fields["topic_prefix"].default).audit
        assert legacy == LEGACY_AUDIT_TOPIC
        assert checkpoint_file_for(configured, legacy) == configured
        other = checkpoint_file_for(configured, "site-b.audit.log")
        assert other == tmp_path / "checkpoints.site-b.audit.log.jsonl"
        assert checkpoint_file_for(configured, "site-c.audit.log") != other


class TestTrustedKeys:
    """The pinned verification keys: parsed from settings, looked up by key id."""

    def test_parse_round_trips_the_printed_form(self) -> None:
        """What ``audit public-key`` prints is what the setting takes."""
        key = Ed25519PrivateKey.generate().public_key()
        trusted = TrustedKeys.parse([encode_public_key(key)])
        assert trusted.key_ids == {key_id(key)}
        assert trusted

    def test_empty_set_is_false(self) -> None:
        """No pinned key: callers refuse to verify instead of trusting a key file."""
        assert not TrustedKeys.parse([])

    @pytest.mark.parametrize("text", ["not base64!", "AAAA", ""])
    def test_malformed_pin_is_refused(self, text: str) -> None:
        """A pinned value that is not a raw Ed25519 public key is a clear error."""
        with pytest.raises(ValueError, match="not the base64 of a raw Ed25519 public key"):
            TrustedKeys.parse([text])

    def test_unknown_key_id_does_not_verify(self) -> None:
        """A signature naming a key that is not pinned never verifies."""
        assert not TrustedKeys().verifies("0" * 16, "AA==", b"x")


class TestRecordSignatures:
    def test_signed_record_verifies_for_its_topic_only(self) -> None:
        """The signature binds the record hash to the audit topic it was written to."""
        private = Ed25519PrivateKey.generate()
        records, _ = build_chain(2, private, every=5)
        signature = sign_record(private, "a.audit.log", records[1])
        trusted = TrustedKeys.of(private.public_key())
        assert record_signature_valid(signature, "a.audit.log", records[1], trusted)
        assert not record_signature_valid(signature, "b.audit.log", records[1], trusted)
        assert not record_signature_valid(signature, "a.audit.log", records[0], trusted)
        assert not record_signature_valid(None, "a.audit.log", records[1], trusted)
        assert not record_signature_valid(signature, "a.audit.log", records[1], TrustedKeys())


@pytest.mark.requirement("RS-SEC-03")
class TestDamagedCheckpointFile:
    def test_garbage_line_is_reported_not_raised(self, tmp_path: Path) -> None:
        """A line that is no checkpoint is listed by number; the others still count."""
        key = Ed25519PrivateKey.generate()
        path = tmp_path / "cps.jsonl"
        good = sign_checkpoint(key, ChainState(0, 4, "a" * 64), T0)
        append_checkpoint(path, good)
        with path.open("a") as handle:
            handle.write("{not a checkpoint\n\n")
        append_checkpoint(path, good)
        read = read_checkpoint_file(path)
        assert (read.checkpoints, read.malformed_lines, read.exists) == ([good, good], [2], True)
        assert read_checkpoints(path) == [good, good]

    def test_absent_file(self, tmp_path: Path) -> None:
        """An absent file holds nothing and says so."""
        read = read_checkpoint_file(tmp_path / "none.jsonl")
        assert (read.checkpoints, read.malformed_lines, read.exists) == ([], [], False)
