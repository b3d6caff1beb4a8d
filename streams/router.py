"""Build arrival events for local files the way a PACS/DICOM router would (``radstream publish``).

Only routing facts are read from a DICOM header (UIDs, modality); patient attributes are never
read into the event. Reading stops before the pixel data, and a file that is not DICOM simply
yields an event without UIDs: judging the file is the validation stage's job, not the router's.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from schemas.events import ImageArrived, Priority
from schemas.modality import recognised_modality

_ROUTING_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality")


def _routing_attributes(path: Path) -> dict[str, str]:
    """UIDs and modality from a DICOM header; empty for anything that is not Part 10 DICOM."""
    try:
        dataset = dcmread(path, stop_before_pixels=True, specific_tags=list(_ROUTING_TAGS))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return {}
    found: dict[str, str] = {}
    for keyword, field in zip(
        _ROUTING_TAGS,
        ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "modality"),
        strict=True,
    ):
        value = str(dataset.get(keyword, "") or "").strip()
        if field == "modality":
            # Only a defined term: free text in Modality is no modality (schemas/modality.py).
            value = recognised_modality(value) or ""
        if value:
            found[field] = value
    return found


def arrival_for_file(
    path: Path,
    *,
    source: str,
    model_ids: Sequence[str] = (),
    requested_by: str | None = None,
    priority: Priority = Priority.ROUTINE,
    with_checksum: bool = True,
    modality: str | None = None,
) -> ImageArrived:
    """An :class:`ImageArrived` event for ``path`` with size, SHA-256 and routing UIDs.

    ``modality`` is the router's hint for files without a DICOM header (PNG/JPEG exports);
    a DICOM file's own Modality attribute wins over it.
    """
    resolved = path.resolve()
    data = resolved.read_bytes()
    content_type, _ = mimetypes.guess_type(resolved.name)
    attributes = _routing_attributes(resolved)
    candidate = ImageArrived(
        source=source,
        image_uri=resolved.as_uri(),
        content_type=content_type or ("application/dicom" if attributes else None),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest() if with_checksum else None,
        model_ids=tuple(model_ids),
        requested_by=requested_by,
        priority=priority,
        modality=modality,
    )
    # Header values are untrusted: keep only those the contract accepts (a malformed UID in a
    # test file must not stop the router from publishing the rest of the event).
    accepted: dict[str, str] = {}
    for field, value in attributes.items():
        try:
            ImageArrived.model_validate({**candidate.model_dump(), field: value})
        except ValueError:
            continue
        accepted[field] = value
    return candidate.model_copy(update=accepted)
