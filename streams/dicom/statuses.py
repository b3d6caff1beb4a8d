"""DICOM status codes radstream answers with, and how its error codes map onto them.

A C-STORE answer and a STOW-RS failure entry say two things: the DICOM status (which tells the
sender whether to retry) and radstream's stable :class:`~schemas.errors.ErrorCode` (in the C-STORE
response's Error Comment, and in the STOW-RS failure item's private attribute). Retryable errors
(broker down, disk full) answer *Refused: Out of Resources* (``A700``), which every PACS retries;
anything wrong with the instance itself answers a status that tells the sender not to.
"""

from __future__ import annotations

from typing import Final

from schemas.errors import ErrorCode, RadstreamError

SUCCESS: Final = 0x0000
OUT_OF_RESOURCES: Final = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000
PROCESSING_FAILURE: Final = 0x0110
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED: Final = 0xC122
"""PS3.18 STOW-RS failure reason "Referenced Transfer Syntax not supported"."""

_STATUS_FOR_CODE: Final[dict[ErrorCode, int]] = {
    ErrorCode.DICOM_SOP_CLASS_UNSUPPORTED: SOP_CLASS_NOT_SUPPORTED,
    ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED: TRANSFER_SYNTAX_NOT_SUPPORTED,
    ErrorCode.DICOM_INVALID_VALUE: DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
}


def failure_status(error: RadstreamError) -> int:
    """The DICOM failure status for ``error``: ``A700`` when a retry can succeed."""
    if error.retryable:
        return OUT_OF_RESOURCES
    return _STATUS_FOR_CODE.get(error.code, CANNOT_UNDERSTAND)


def is_retryable_status(status: int) -> bool:
    """Whether a peer's C-STORE failure status means "try again later" (``A7xx``)."""
    return status & 0xFF00 == OUT_OF_RESOURCES


def is_success_or_warning(status: int) -> bool:
    """Success (``0000``) or a warning (``0001``, ``0107``, ``0116``, ``Bxxx``): stored."""
    return status in (SUCCESS, 0x0001, 0x0107, 0x0116) or status & 0xF000 == 0xB000
