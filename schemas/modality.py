"""Modality (0008,0060): the DICOM defined terms, and nothing else, is what radstream carries.

Modality is a code string on the wire, but senders fill it however they like, and a value that
merely looks like a code (``[A-Z0-9]{1,16}``) can still be a surname typed into the wrong field.
So a value counts as a modality only when it is a defined term: the current ones are DICOM's
CID 33 "Modality", read from pydicom's copy of the standard; the retired ones (PS3.3
C.7.3.1.1.1) still arrive from old archives. Anything else is not routed by, logged, published
or returned: readers of a sender's value treat it as absent (:func:`recognised_modality`), and
what a person types into the API or the command line is refused (:func:`defined_modality`).
"""

from __future__ import annotations

from typing import Final

from pydicom.sr.codedict import Collection

RETIRED_MODALITIES: Final = frozenset(
    {"AS", "CD", "CF", "CP", "CS", "DD", "DF", "DM", "DS", "EC", "FA", "FS", "LP", "MA", "MS"}
    | {"OPR", "ST", "VF"}
)
"""PS3.3 C.7.3.1.1.1's retired defined terms (e.g. ``ST`` for SPECT, ``MA`` for MR angiography)."""

DICOM_MODALITIES: Final[frozenset[str]] = (
    frozenset(code.value for code in Collection("CID33").concepts.values()) | RETIRED_MODALITIES
)
"""Every value radstream accepts as a modality."""


def recognised_modality(value: str | None) -> str | None:
    """``value`` (surrounding blanks removed) when it is a defined term, else ``None``."""
    if value is None:
        return None
    code = value.strip()
    return code if code in DICOM_MODALITIES else None


def defined_modality(value: str) -> str:
    """``value`` when it is a defined term; else ``ValueError`` naming no part of it.

    For input a person types (an API field, a command-line option): refused, not dropped.
    """
    code = recognised_modality(value)
    if code is None:
        raise ValueError("not a DICOM modality defined term (e.g. CT, MR, CR, DX)")
    return code
