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
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.audit import AuditCheckpoint
from schemas.settings import AuditSettings
from streams.audit.chain import ChainState, canonical_json

SIGNATURE_DOMAIN = b"radstream.audit.checkpoint.v1\n"


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


def checkpoint_signature_valid(checkpoint: AuditCheckpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether ``checkpoint`` names ``public_key`` and carries its valid signature."""
    if checkpoint.key_id != key_id(public_key):
        return False
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        public_key.verify(signature, signed_bytes(checkpoint))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


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
