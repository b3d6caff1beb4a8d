"""The one place the validation stage touches the file system: resolving and reading images.

Events carry ``file://`` URIs chosen by routers, i.e. untrusted input. A URI is resolved
(symlinks followed, ``..`` collapsed) and must land strictly inside one of the configured
storage roots; nothing else is opened. Paths are never built from DICOM header values.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from schemas.errors import ErrorCode, error_for

_ALLOWED_HOSTS = frozenset({"", "localhost"})


def resolve_image_uri(uri: str, roots: Sequence[Path]) -> Path:
    """Resolve a ``file://`` URI to a real path strictly inside one of ``roots``.

    Raises:
        InputValidationError: ``STORAGE_URI_SCHEME_UNSUPPORTED`` for any other scheme or a
            remote host; ``STORAGE_PATH_OUTSIDE_ROOTS`` for NUL bytes, relative paths, or a
            path that (after percent-decoding, ``..`` and symlinks) leaves every root.
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc.lower() not in _ALLOWED_HOSTS:
        raise error_for(
            ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED, "only file:// URIs on this host are read"
        )
    if parts.query or parts.fragment:
        raise error_for(
            ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "file URI must not carry a query or fragment"
        )
    raw_path = unquote(parts.path, errors="strict")
    if "\x00" in raw_path or not raw_path.startswith("/"):
        raise error_for(ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "file URI path is not absolute")
    # realpath follows every symlink and collapses "..", so the containment test below sees
    # where the bytes really are, not where the URI claims they are.
    candidate = Path(os.path.realpath(raw_path))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if candidate != real_root and candidate.is_relative_to(real_root):
            return candidate
    raise error_for(
        ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "path resolves outside the configured storage roots"
    )


def read_image_bytes(
    path: Path, max_bytes: int, *, settle_seconds: float = 0.0, now: float | None = None
) -> bytes:
    """Read a regular file of at most ``max_bytes``, checking the size before reading.

    Args:
        settle_seconds: a file modified less than this before ``now`` is still being written.
        now: the wall-clock time (seconds since the epoch) to compare the file's mtime with.

    Raises:
        TransientError: ``STORAGE_FILE_NOT_FOUND`` (retryable: the router may still be writing),
            ``STORAGE_FILE_INCOMPLETE`` (retryable: modified within ``settle_seconds``) or
            ``STORAGE_READ_FAILED`` for other OS errors or a non-regular file.
        InputValidationError: ``IMAGE_TOO_LARGE`` when the file exceeds ``max_bytes``, whether
            seen by ``stat`` or while reading (the file may grow in between).
    """
    # O_NONBLOCK: opening a FIFO must not hang the stage; O_NOFOLLOW: a symlink swapped in
    # after resolve_image_uri is refused rather than followed.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise error_for(ErrorCode.STORAGE_FILE_NOT_FOUND, "image file does not exist") from exc
    except OSError as exc:
        raise error_for(ErrorCode.STORAGE_READ_FAILED, "image file could not be opened") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error_for(ErrorCode.STORAGE_READ_FAILED, "image path is not a regular file")
        if info.st_size > max_bytes:
            raise error_for(ErrorCode.IMAGE_TOO_LARGE, _too_large(max_bytes))
        if settle_seconds > 0 and now is not None and now - info.st_mtime < settle_seconds:
            raise error_for(ErrorCode.STORAGE_FILE_INCOMPLETE, "image file is still being written")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error_for(ErrorCode.STORAGE_READ_FAILED, "image file could not be read") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error_for(ErrorCode.IMAGE_TOO_LARGE, _too_large(max_bytes))
    return data


def _too_large(max_bytes: int) -> str:
    return f"image file exceeds the limit of {max_bytes} bytes"
