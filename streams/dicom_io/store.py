"""Content-addressed, crash-safe storage of received DICOM instances.

An instance is stored at ``<root>/<aa>/<bb>/<sha256>.dcm`` (``aa``/``bb``: the first hex pairs
of its SHA-256). Paths are built from the digest only, never from a UID or any other header value
(PS3.10 file-set path traversals are a known attack). A write goes to a temporary file in the
target folder, is fsynced, linked into place and the folder fsynced, so after a crash a file is
either whole or absent. Writing the same bytes twice is a no-op: content addressing makes a
resent instance land on the same file.

A ``.published`` marker beside the file records that its arrival event was confirmed by the
broker, so a resend is answered without a second event, across restarts and processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Final

from pydicom import Dataset, dcmread

from schemas.errors import ErrorCode, InputValidationError, TransientError, folder_unusable
from schemas.settings import Settings
from streams.validation.decoding import library_warnings_guarded

_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
SUFFIX: Final = ".dcm"
PUBLISHED_SUFFIX: Final = ".published"


def sha256_of(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class InstanceStore:
    """Stores instances by content under ``root`` (created on first write, mode 0750)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_writable(self) -> None:
        """Create ``root`` when missing (mode 0750), and prove it writable: a probe file is
        created in it and removed, since ``os.access`` answers "writable" to root whatever the
        folder's permissions (a read-only mount, say) and says nothing of a missing folder.

        Raises:
            OSError: the folder cannot be created (a parent is a regular file, no permission),
                is not a folder, or refuses a new file (read-only, full, permissions).
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        descriptor, probe = tempfile.mkstemp(prefix=".writable-probe-", dir=self.root)
        os.close(descriptor)
        os.unlink(probe)

    def path_for(self, sha256: str) -> Path:
        """Where the instance with this digest is (or would be) stored."""
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}{SUFFIX}"

    def write(self, data: bytes, sha256: str) -> Path:
        """Store ``data`` (whose digest is ``sha256``) durably; return its path.

        Raises:
            TransientError: ``STORAGE_WRITE_FAILED`` when the file or its folder could not be
                written and synced (disk full, read-only, I/O error); nothing partial remains.
        """
        target = self.path_for(sha256)
        try:
            if target.is_file() and target.stat().st_size == len(data):
                return target
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._write_new(target, data)
        except OSError as exc:
            raise TransientError(
                ErrorCode.STORAGE_WRITE_FAILED, "the instance could not be stored"
            ) from exc
        return target

    @staticmethod
    def _write_new(target: Path, data: bytes) -> None:
        descriptor, temporary = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            # os.replace: a concurrent writer of the same bytes may have won; same content.
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_directory(target.parent)

    def is_published(self, sha256: str) -> bool:
        """Whether this instance's arrival event was confirmed by the broker before."""
        return self.path_for(sha256).with_suffix(PUBLISHED_SUFFIX).exists()

    def mark_published(self, sha256: str) -> None:
        """Record that this instance's arrival event was confirmed (durably)."""
        marker = self.path_for(sha256).with_suffix(PUBLISHED_SUFFIX)
        marker.touch(mode=0o640, exist_ok=True)
        _fsync_directory(marker.parent)

    def read_header(self, sha256: str) -> Dataset:
        """The stored instance's dataset without pixel data (for building its report).

        Raises:
            FileNotFoundError: nothing with this digest was stored here (or it was removed).
            InputValidationError: ``IMAGE_MALFORMED`` when the stored header cannot be read.
        """
        return read_header(self.path_for(sha256))


def read_header(source: Path | bytes) -> Dataset:
    """The dataset of a Part 10 file or its bytes, without pixel data (warnings silenced).

    Raises:
        FileNotFoundError: ``source`` is a path and there is no such file.
        InputValidationError: ``IMAGE_MALFORMED`` when the header cannot be read.
    """
    with library_warnings_guarded():
        try:
            return dcmread(
                BytesIO(source) if isinstance(source, bytes) else source, stop_before_pixels=True
            )
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise InputValidationError(
                ErrorCode.IMAGE_MALFORMED, "the source instance's header is corrupt"
            ) from exc


def ensure_storage_writable(settings: Settings) -> None:
    """Check at start that the folder received instances go to can be written (blocking).

    The DICOM listener and the API (STOW-RS) run it first: without it the listener would start,
    answer C-ECHO and fail every C-STORE with ``A700``, which senders retry for ever. The
    folder is created when missing, as the store does on its first write.

    Raises:
        RadstreamError: ``SETTINGS_INVALID`` naming the folder and its variable.
    """
    directory = settings.dicom_storage_dir
    try:
        InstanceStore(directory).ensure_writable()
    except OSError as exc:
        raise folder_unusable(
            "store received DICOM", str(directory), exc, "RADSTREAM_DICOM__STORAGE_DIR"
        ) from exc
