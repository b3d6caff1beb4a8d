"""The DICOMweb STOW-RS response: per-instance success and failure as DICOM JSON (PS3.18 10.5).

Stored instances are listed in the Referenced SOP Sequence (0008,1199), refused ones in the Failed
SOP Sequence (0008,1198) with their Failure Reason (0008,1197) and radstream's stable error code
and reason in a private block (creator ``RADSTREAM`` at (0009,0010)). Only UIDs that follow the
UID grammar are echoed: a part whose UIDs are free text (possibly a patient's name) is reported
without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from schemas.errors import ErrorCode

PRIVATE_CREATOR: Final = "RADSTREAM"
_CREATOR_TAG: Final = "00090010"
_ERROR_CODE_TAG: Final = "00091001"
_ERROR_REASON_TAG: Final = "00091002"
_SOP_CLASS_TAG: Final = "00081150"
_SOP_INSTANCE_TAG: Final = "00081155"
_FAILURE_REASON_TAG: Final = "00081197"
FAILED_SOP_SEQUENCE: Final = "00081198"
REFERENCED_SOP_SEQUENCE: Final = "00081199"
DICOM_JSON: Final = "application/dicom+json"


@dataclass(frozen=True, slots=True)
class StowStored:
    """One instance stored and announced on the broker."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class StowFailed:
    """One part refused, with the DICOM failure reason and radstream's code."""

    failure_reason: int
    code: ErrorCode
    reason: str
    retryable: bool
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _references(sop_class_uid: str | None, sop_instance_uid: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if sop_class_uid is not None:
        item[_SOP_CLASS_TAG] = _element("UI", sop_class_uid)
    if sop_instance_uid is not None:
        item[_SOP_INSTANCE_TAG] = _element("UI", sop_instance_uid)
    return item


def stow_response(stored: Sequence[StowStored], failed: Sequence[StowFailed]) -> dict[str, Any]:
    """The STOW-RS response body (DICOM JSON) for the outcome of each part."""
    body: dict[str, Any] = {}
    if failed:
        body[FAILED_SOP_SEQUENCE] = _element(
            "SQ",
            *(
                {
                    **_references(f.sop_class_uid, f.sop_instance_uid),
                    _FAILURE_REASON_TAG: _element("US", f.failure_reason),
                    _CREATOR_TAG: _element("LO", PRIVATE_CREATOR),
                    _ERROR_CODE_TAG: _element("LO", f.code.value),
                    _ERROR_REASON_TAG: _element("LT", f.reason[:500]),
                }
                for f in failed
            ),
        )
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = _element(
            "SQ", *(_references(s.sop_class_uid, s.sop_instance_uid) for s in stored)
        )
    return body


def stow_status(stored: Sequence[StowStored], failed: Sequence[StowFailed]) -> int:
    """The HTTP status of a STOW-RS answer.

    200 every part stored; 202 some stored, some refused; 503 nothing stored and every failure
    retryable (broker or disk down: send again later); 409 nothing stored otherwise.
    """
    if not failed:
        return 200
    if stored:
        return 202
    if all(f.retryable for f in failed):
        return 503
    return 409
