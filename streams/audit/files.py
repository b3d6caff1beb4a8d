"""The audit trail's explicit files: the Ed25519 signing key and the checkpoint file.

The signing key is a PKCS#8 PEM file created with mode 0600 (its directory 0700); a key file
readable by group or others is refused, because whoever reads it can forge checkpoints. The
checkpoint file is JSON lines, appended and fsync'ed per checkpoint, and lives outside the
audit store so cutting the topic or table does not cut it too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from pydantic import ValidationError

from schemas.audit import LEGACY_AUDIT_TOPIC, AuditCheckpoint


class KeyFileError(ValueError):
    """The key file is unsafe or does not hold an Ed25519 key."""


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the Ed25519 signing key at ``path``, creating it (0600) when absent.

    Raises:
        KeyFileError: the file is readable by group/others or holds another kind of key.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        # O_EXCL: never overwrite a key another process created meanwhile.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        return key
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"signing key {path} has mode {mode:o}; it must be 0600")
    key_obj = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key_obj, Ed25519PrivateKey):
        raise KeyFileError(f"{path} does not hold an Ed25519 private key")
    return key_obj


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key from a public-key PEM, or derived from a private-key PEM.

    Verifiers should be given the public key only; accepting the private key file too keeps
    single-host set-ups simple.
    """
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyFileError(f"{path} does not hold an Ed25519 key")
        return private.public_key()
    public = load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{path} does not hold an Ed25519 key")
    return public


def write_public_key(public_key: Ed25519PublicKey, path: Path) -> None:
    """Write ``public_key`` as a SubjectPublicKeyInfo PEM (for verifiers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


def checkpoint_file_for(path: Path, topic: str) -> Path:
    """The checkpoint file of the chain on audit ``topic``, given the configured file.

    A chain is named by its topic: a second topic prefix keeps its checkpoints in a file of its
    own beside the configured one (``checkpoints.<topic>.jsonl``), so neither vouches for the
    other's chain. The default prefix's topic keeps the configured file, as before.
    """
    if topic == LEGACY_AUDIT_TOPIC:
        return path
    return path.with_name(f"{path.stem}.{topic}{path.suffix}")


def append_checkpoint(path: Path, checkpoint: AuditCheckpoint) -> None:
    """Append one checkpoint as a JSON line and fsync it, so it survives a crash."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = checkpoint.model_dump_json() + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def append_checkpoints(path: Path, checkpoints: Iterable[AuditCheckpoint]) -> None:
    """Append several checkpoints (each fsync'ed)."""
    for checkpoint in checkpoints:
        append_checkpoint(path, checkpoint)


@dataclass(frozen=True, slots=True)
class CheckpointFile:
    """What the checkpoint file holds: its checkpoints, and the lines that are none.

    A line that is not a checkpoint means the file was tampered with (or damaged): verification
    reports it as a verdict, and the checkpoints on the other lines still count.
    """

    checkpoints: list[AuditCheckpoint]
    malformed_lines: list[int]
    exists: bool


def read_checkpoint_file(path: Path) -> CheckpointFile:
    """Every checkpoint in the file, in order, and the numbers of lines that are not one."""
    if not path.exists():
        return CheckpointFile([], [], exists=False)
    checkpoints: list[AuditCheckpoint] = []
    malformed: list[int] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                checkpoints.append(AuditCheckpoint.model_validate_json(line))
            except ValidationError:
                malformed.append(number)
    return CheckpointFile(checkpoints, malformed, exists=True)


def read_checkpoints(path: Path) -> list[AuditCheckpoint]:
    """Every well-formed checkpoint in the file, in order; an absent file holds none."""
    return read_checkpoint_file(path).checkpoints
