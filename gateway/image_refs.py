"""Check that a submitted ``file://`` image URI points inside a configured storage root.

Reuses the validation stage's :func:`streams.validation.storage.resolve_image_uri`, so the
gateway and the stage agree on what is readable; the stage checks again when it reads the file
(a symlink may change in between). The gateway checks first so a client learns at once that a
reference can never be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from schemas.errors import ErrorCode, InputValidationError
from streams.validation.storage import resolve_image_uri as _resolve_in_roots


def resolve_image_uri(uri: str, roots: Sequence[Path]) -> Path:
    """Return the absolute path ``uri`` names, provided it lies inside one of ``roots``.

    Raises:
        InputValidationError: ``STORAGE_URI_SCHEME_UNSUPPORTED`` for anything but a local
            ``file://`` URI, ``STORAGE_PATH_OUTSIDE_ROOTS`` for a path outside every root or
            one that cannot be decoded or resolved.
    """
    try:
        return _resolve_in_roots(uri, roots)
    except (UnicodeDecodeError, ValueError, OSError) as exc:
        # Percent-encoded bytes that are not UTF-8 ("%ff"), over-long names: never readable.
        raise InputValidationError(
            ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS, "the image path cannot be resolved"
        ) from exc
