"""Check that a submitted ``file://`` image URI points inside a configured storage root.

The validation stage checks again when it reads the file (a symlink may change in between); the
gateway checks first so a client learns at once that a reference can never be read.
Duplicates the validation stage's URI resolution until that is shared (noted for the lead).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from schemas.errors import ErrorCode, InputValidationError


def resolve_image_uri(uri: str, roots: Sequence[Path]) -> Path:
    """Return the absolute path ``uri`` names, provided it lies inside one of ``roots``.

    Symlinks and ``..`` are resolved before the check; percent-encoding is decoded first, so
    ``%2e%2e`` is no way around it. The file need not exist yet (a router may still write it).

    Raises:
        InputValidationError: ``STORAGE_URI_SCHEME_UNSUPPORTED`` for anything but a local
            ``file://`` URI, ``STORAGE_PATH_OUTSIDE_ROOTS`` for a path outside every root.
    """
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise InputValidationError(
            ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED, "the image URI must be a local file:// URI"
        )
    if parts.query or parts.fragment:
        raise InputValidationError(
            ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED, "the image URI must not have a query"
        )
    raw_path = unquote(parts.path)
    if "\x00" in raw_path or not raw_path.startswith("/"):
        raise InputValidationError(
            ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "the image path must be absolute"
        )
    try:
        resolved = Path(raw_path).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, over-long names
        raise InputValidationError(
            ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "the image path cannot be resolved"
        ) from exc
    for root in roots:
        if resolved.is_relative_to(root.resolve()) and resolved != root.resolve():
            return resolved
    raise InputValidationError(
        ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "the image path is outside the storage roots"
    )
