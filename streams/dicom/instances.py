"""What radstream accepts from a DICOM sender, and the arrival event of a received instance.

:func:`read_instance` reads the header of a received Part 10 byte stream (never the pixels) and
keeps only routing facts: UIDs, modality, SOP class and transfer syntax. Patient attributes are
never read into anything that leaves this module. Every refusal is a
:class:`~schemas.errors.InputValidationError` whose reason names the attribute, never its
value: a sender may put patient data anywhere, UIDs included.

:func:`arrival_for_instance` builds the ``ImageArrived`` event. Its event id is derived from
the SOP Instance UID and the SHA-256 of the bytes, so a sender resending the same instance (after
a timeout, or because our answer was lost) yields the same event id and is recognised.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import Final

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from schemas.errors import ErrorCode, InputValidationError
from schemas.events import ImageArrived, Priority
from schemas.modality import recognised_modality
from streams.validation.decoding import library_warnings_guarded

DICOM_CONTENT_TYPE: Final = "application/dicom"

ACCEPTED_TRANSFER_SYNTAXES: Final[tuple[str, ...]] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
)
"""Transfer syntaxes the receiver accepts (stored as sent; the validation stage decodes them)."""

IMAGE_STORAGE_SOP_CLASSES: Final[dict[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.481.1": "RT Image Storage",
}
"""The image storage SOP classes the receiver and STOW-RS accept.

Only images: structured reports, presentation states, RT plans and the like carry nothing to
infer on, and refusing SR also keeps radstream's own result reports from looping back in.
"""

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNDEFINED_LENGTH: Final = 0xFFFFFFFF
_HEADER_BYTES: Final = 8  # tag, VR and 2-byte length, or tag and 4-byte length
_EVENT_NAMESPACE: Final = uuid.UUID("3c4e7f0a-9b1d-4f5e-8a2c-6d0b1e9f7a35")


@dataclass(frozen=True, slots=True)
class ReceivedInstance:
    """The routing facts of a received instance (UIDs checked against the UID grammar)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str | None


def _invalid(code: ErrorCode, reason: str) -> InputValidationError:
    return InputValidationError(code, reason)


def valid_uid(value: object) -> str | None:
    """``value`` as a UID when it follows the UID grammar (digits and dots, at most 64)."""
    text = str(value or "").strip().rstrip("\x00")
    return text if len(text) <= 64 and _UID.fullmatch(text) else None


def _required_uid(dataset: object, keyword: str) -> str:
    uid = valid_uid(getattr(dataset, keyword, None))
    if uid is None:
        raise _invalid(ErrorCode.DICOM_INVALID_VALUE, f"{keyword} is missing or not a valid UID")
    return uid


def read_instance(data: bytes) -> ReceivedInstance:
    """The routing facts of a Part 10 byte stream, read from its header only.

    Raises:
        InputValidationError: ``IMAGE_EMPTY``, ``DICOM_NOT_PART10`` (no preamble/meta),
            ``IMAGE_MALFORMED`` (unreadable header: corrupt, cut short, an element's length
            running past the end of the data), ``DICOM_TRANSFER_SYNTAX_MISSING``,
            ``TRANSFER_SYNTAX_UNSUPPORTED``, ``DICOM_SOP_CLASS_UNSUPPORTED`` or
            ``DICOM_INVALID_VALUE`` (a required UID missing, malformed or inconsistent).
    """
    if not data:
        raise _invalid(ErrorCode.IMAGE_EMPTY, "the instance is empty")
    with library_warnings_guarded():
        try:
            dataset = dcmread(BytesIO(data), stop_before_pixels=True)
        except InvalidDicomError as exc:
            raise _invalid(
                ErrorCode.DICOM_NOT_PART10, "the instance has no DICOM Part 10 header"
            ) from exc
        except Exception as exc:
            raise _invalid(ErrorCode.IMAGE_MALFORMED, "the DICOM header is corrupt") from exc
        if _cut_short(dataset, data):
            # Before the routing facts: the attributes after the cut are not "missing" from a
            # well-formed dataset (A900, fix the data), the dataset could not be read (C000).
            raise _invalid(
                ErrorCode.IMAGE_MALFORMED,
                "the dataset could not be read: it is cut short or an element's length is corrupt",
            )
        try:
            return _routing_facts(dataset)
        except InputValidationError:
            raise
        except Exception as exc:
            raise _invalid(ErrorCode.IMAGE_MALFORMED, "the DICOM header is corrupt") from exc


def _cut_short(dataset: Dataset, data: bytes) -> bool:
    """Whether the header read stopped early because an element's length is corrupt or cut off.

    pydicom does not raise on this at the top level: it reads what is left as the broken
    element's value (or finds fewer than the 8 bytes of an element header), stops, and returns
    the elements read so far, so every attribute after the break looks absent. Its traces are in
    the elements themselves: a raw element holding fewer value bytes than its declared length,
    or 1-7 bytes left over after the last element (a cut-off header; a read that ends at the
    pixel data leaves 8 or more). pydicom warns about some of these cases, but warning filters
    and its logger are process-wide and shared with the receiver's other threads, so they cannot
    say whose read it was. (Inside an undefined-length sequence pydicom raises instead, which
    :func:`read_instance` translates.) The left-over check needs offsets into ``data``, which a
    deflated dataset, read from an inflated copy, does not have.
    """
    meta = getattr(dataset, "file_meta", None)
    elements = [*(_elements(meta) if isinstance(meta, Dataset) else []), *_elements(dataset)]
    if any(_value_cut_short(element) for element in elements):
        return True
    deflated = getattr(meta, "TransferSyntaxUID", None) == DeflatedExplicitVRLittleEndian
    return not deflated and 0 < _bytes_after_last_element(elements, len(data)) < _HEADER_BYTES


def _elements(dataset: Dataset) -> list[object]:
    # keep_deferred: look at what was read; convert and read nothing more. Typed DataElement,
    # but an element nobody accessed yet is the RawDataElement read (value bytes, length).
    tags = dataset.keys()  # iterating the dataset itself would convert every element
    return [dataset.get_item(tag, keep_deferred=True) for tag in tags]


def _value_cut_short(element: object) -> bool:
    return (
        isinstance(element, RawDataElement)
        and element.length != _UNDEFINED_LENGTH
        and isinstance(element.value, bytes)
        and len(element.value) < element.length
    )


def _bytes_after_last_element(elements: list[object], size: int) -> int:
    """How many bytes follow the last element read; 0 when that cannot be told."""
    raw = [element for element in elements if isinstance(element, RawDataElement)]
    if not raw:
        return 0
    last = max(raw, key=lambda element: element.value_tell)
    parsed_after = any(
        (getattr(element, "file_tell", None) or 0) > last.value_tell
        for element in elements
        if not isinstance(element, RawDataElement)
    )
    if last.length == _UNDEFINED_LENGTH or parsed_after:
        return 0
    return size - (last.value_tell + last.length)


def referenced_uids(data: bytes) -> tuple[str | None, str | None]:
    """Best effort: the SOP Class and Instance UIDs of ``data`` when readable and well-formed.

    For a STOW-RS failure entry; anything that is not a valid UID is left out, never echoed.
    """
    with library_warnings_guarded():
        try:
            dataset = dcmread(BytesIO(data), stop_before_pixels=True)
            return valid_uid(dataset.get("SOPClassUID")), valid_uid(dataset.get("SOPInstanceUID"))
        except Exception:  # noqa: BLE001 - unreadable: nothing to reference
            return None, None


def _routing_facts(dataset: object) -> ReceivedInstance:
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = valid_uid(getattr(meta, "TransferSyntaxUID", None))
    if transfer_syntax is None:
        raise _invalid(
            ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING, "the file meta has no TransferSyntaxUID"
        )
    if transfer_syntax not in ACCEPTED_TRANSFER_SYNTAXES:
        raise _invalid(
            ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED,
            f"transfer syntax {transfer_syntax} is not accepted",
        )
    sop_class = _required_uid(dataset, "SOPClassUID")
    if sop_class not in IMAGE_STORAGE_SOP_CLASSES:
        raise _invalid(
            ErrorCode.DICOM_SOP_CLASS_UNSUPPORTED, f"SOP class {sop_class} is not accepted"
        )
    sop_instance = _required_uid(dataset, "SOPInstanceUID")
    stored_as = valid_uid(getattr(meta, "MediaStorageSOPInstanceUID", None))
    if stored_as is not None and stored_as != sop_instance:
        raise _invalid(
            ErrorCode.DICOM_INVALID_VALUE,
            "MediaStorageSOPInstanceUID differs from SOPInstanceUID",
        )
    modality = str(getattr(dataset, "Modality", "") or "").strip()
    return ReceivedInstance(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=_required_uid(dataset, "StudyInstanceUID"),
        series_instance_uid=_required_uid(dataset, "SeriesInstanceUID"),
        transfer_syntax_uid=transfer_syntax,
        modality=recognised_modality(modality),
    )


def arrival_event_id(sop_instance_uid: str, sha256: str) -> uuid.UUID:
    """The arrival event id of an instance: the same for the same SOP instance and bytes."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{sop_instance_uid}:{sha256}")


def arrival_for_instance(
    instance: ReceivedInstance,
    *,
    sha256: str,
    size_bytes: int,
    image_uri: str,
    source: str,
    requested_by: str | None = None,
    priority: Priority = Priority.ROUTINE,
) -> ImageArrived:
    """The ``ImageArrived`` event of a stored instance (key: its StudyInstanceUID)."""
    return ImageArrived(
        event_id=arrival_event_id(instance.sop_instance_uid, sha256),
        source=source,
        image_uri=image_uri,
        content_type=DICOM_CONTENT_TYPE,
        size_bytes=size_bytes,
        sha256=sha256,
        study_instance_uid=instance.study_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        sop_instance_uid=instance.sop_instance_uid,
        modality=instance.modality,
        requested_by=requested_by,
        priority=priority,
    )
