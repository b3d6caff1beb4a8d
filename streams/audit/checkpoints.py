"""Ed25519-signed checkpoints of a chain head, and when to take them.

A plain hash chain cannot show that its tail was cut off: the shorter chain is still a valid
chain. A checkpoint is a signed statement "chain P had head hash H at sequence S", kept outside
the audit store (a file) as well as published; a log that no longer reaches S with hash H was
truncated or rewritten. The signed bytes are a domain tag followed by the canonical JSON of the
checkpoint without its signature, so a signature made for anything else never verifies here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.audit import AuditCheckpoint, AuditRecord
from schemas.settings import AuditSettings
from streams.audit.chain import ChainState, canonical_json, hash_is_valid

SIGNATURE_DOMAIN = b"radstream.audit.checkpoint.v1\n"
RECORD_SIGNATURE_DOMAIN = b"radstream.audit.record.v1\n"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id: the first 16 hex digits of SHA-256 of its raw 32 public bytes."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_bytes(checkpoint: AuditCheckpoint) -> bytes:
    """The bytes a checkpoint's signature covers: the domain tag and every other field."""
    data = checkpoint.model_dump(mode="json")
    data.pop("signature")
    return SIGNATURE_DOMAIN + canonical_json(data)


def sign_checkpoint(
    private_key: Ed25519PrivateKey, state: ChainState, created_at: datetime
) -> AuditCheckpoint:
    """A checkpoint of ``state`` signed with ``private_key``.

    Raises:
        ValueError: the chain is empty (there is no head to vouch for).
    """
    if state.sequence < 0:
        raise ValueError("an empty chain has no head to checkpoint")
    unsigned = AuditCheckpoint(
        chain_partition=state.chain_partition,
        sequence=state.sequence,
        head_hash=state.head_hash,
        created_at=created_at,
        key_id=key_id(private_key.public_key()),
        signature="AA==",
    )
    signature = private_key.sign(signed_bytes(unsigned))
    return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode("ascii")})


class TrustedKeys:
    """The pinned set of Ed25519 public keys signatures are verified with, by key id.

    More than one key may be trusted at once: after a signing-key rotation the old key stays
    pinned so that the checkpoints and records it signed still verify, and every signature
    names the key that made it (its ``key_id``).
    """

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys = {key_id(key): key for key in keys}

    @classmethod
    def of(cls, *keys: Ed25519PublicKey) -> TrustedKeys:
        """The set of ``keys``."""
        return cls(keys)

    @classmethod
    def parse(cls, encoded: Iterable[str]) -> TrustedKeys:
        """Keys pinned in settings: each the base64 of a raw 32-byte Ed25519 public key.

        Raises:
            ValueError: an entry is not a base64 Ed25519 public key.
        """
        keys: list[Ed25519PublicKey] = []
        for text in encoded:
            try:
                raw = base64.b64decode(text.strip(), validate=True)
                keys.append(Ed25519PublicKey.from_public_bytes(raw))
            except (binascii.Error, ValueError) as exc:
                raise ValueError(
                    "a pinned audit key is not the base64 of a raw Ed25519 public key"
                ) from exc
        return cls(keys)

    def with_key(self, key: Ed25519PublicKey) -> TrustedKeys:
        """These keys and ``key``."""
        return TrustedKeys([*self._keys.values(), key])

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the trusted keys."""
        return frozenset(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def verifies(self, kid: str, signature_b64: str, message: bytes) -> bool:
        """Whether the trusted key ``kid`` made ``signature_b64`` (base64) over ``message``."""
        public_key = self._keys.get(kid)
        if public_key is None:
            return False
        try:
            public_key.verify(base64.b64decode(signature_b64, validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def encode_public_key(public_key: Ed25519PublicKey) -> str:
    """The form a key is pinned in (``AuditSettings.trusted_public_keys``): raw, base64."""
    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def checkpoint_signature_valid(
    checkpoint: AuditCheckpoint, trusted: Ed25519PublicKey | TrustedKeys
) -> bool:
    """Whether ``checkpoint`` names a trusted key and carries that key's valid signature."""
    keys = trusted if isinstance(trusted, TrustedKeys) else TrustedKeys.of(trusted)
    return keys.verifies(checkpoint.key_id, checkpoint.signature, signed_bytes(checkpoint))


def record_signed_bytes(topic: str, record_hash: str) -> bytes:
    """What a record signature covers: the domain tag, the audit topic and the record hash.

    The hash covers every field of the record, and the topic binds the record to the one chain
    it was written to, so a genuine record copied onto another audit topic does not verify.
    """
    return RECORD_SIGNATURE_DOMAIN + canonical_json({"hash": record_hash, "topic": topic})


def sign_record(private_key: Ed25519PrivateKey, topic: str, record: AuditRecord) -> str:
    """The writer's signature of one record: ``<key_id>:<base64 signature>`` (a header value)."""
    signature = private_key.sign(record_signed_bytes(topic, record.hash))
    return f"{key_id(private_key.public_key())}:{base64.b64encode(signature).decode('ascii')}"


def record_signature_valid(
    signature: str | None, topic: str, record: AuditRecord, trusted: TrustedKeys
) -> bool:
    """Whether ``record`` is the audit writer's: its hash is its content's, signed by a trusted key.

    A record without a signature, with an unknown key id, or whose content no longer matches
    its hash was not written by the audit agent (or was changed since).
    """
    if signature is None or not hash_is_valid(record):
        return False
    kid, _, encoded = signature.partition(":")
    return trusted.verifies(kid, encoded, record_signed_bytes(topic, record.hash))


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """Take a checkpoint after ``every_records`` new records or ``every_seconds``, if any."""

    every_records: int = 100
    every_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.every_records < 1 or self.every_seconds <= 0:
            raise ValueError("every_records must be >= 1 and every_seconds > 0")

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> CheckpointPolicy:
        """The policy configured in :class:`~schemas.settings.AuditSettings`."""
        return cls(settings.checkpoint_every_records, settings.checkpoint_every_seconds)

    def due(self, records_since: int, seconds_since: float) -> bool:
        """Whether a checkpoint is due, given the records and time since the last one."""
        if records_since <= 0:
            return False
        return records_since >= self.every_records or seconds_since >= self.every_seconds
