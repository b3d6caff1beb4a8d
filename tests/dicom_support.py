"""DICOM test material shared by unit, integration and security tests.

pydicom's bundled test files (found offline) in the transfer syntaxes the issue names, and
instances carrying PHI canaries in every patient attribute, so tests can prove none of it leaks.
"""

from __future__ import annotations

import re
import uuid
import warnings
from io import BytesIO
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.uid import generate_uid

# Uncompressed (explicit LE), RLE, JPEG 2000, JPEG baseline, deflate.
SAMPLE_FILES = (
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "image_dfl.dcm",
)
PHI_CANARIES = {
    "PatientName": "CANARYDOE^JANEPHI",
    "PatientID": "MRN-CANARY-991177",
    "PatientBirthDate": "19450607",
    "OtherPatientIDs": "CANARY-OTHER-ID-55",
    "PatientAddress": "12 Canary Street, Leakville",
    "PatientTelephoneNumbers": "+44 0000 CANARY",
    "ReferringPhysicianName": "DR^CANARYREFERRER",
    "InstitutionAddress": "1 Canary Hospital Road",
    "OperatorsName": "CANARYOPERATOR^OPS",
    "AccessionNumber": "ACCCANARY42",
    "StudyDescription": "CANARY study of Jane Canarydoe",
    "PatientComments": "canary comment about the patient",
}
"""Patient attributes and the values written into them (none may ever leak)."""


def sample_path(name: str) -> Path:
    """A pydicom test file's path."""
    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(name)
    return Path(str(found))


def sample_bytes(name: str = "CT_small.dcm") -> bytes:
    """A pydicom test file's bytes."""
    return sample_path(name).read_bytes()


def to_bytes(dataset: Dataset) -> bytes:
    """A dataset as Part 10 bytes."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def variant(
    name: str = "CT_small.dcm",
    *,
    phi: bool = False,
    new_uids: bool = True,
    **attributes: object,
) -> bytes:
    """A copy of a sample with fresh UIDs (so tests never collide), PHI canaries, overrides.

    pydicom warns about invalid values (a name in a UID) as they are set; such values are the
    point of some tests, so the warnings are silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _variant(name, phi=phi, new_uids=new_uids, attributes=attributes)


def _variant(name: str, *, phi: bool, new_uids: bool, attributes: dict[str, object]) -> bytes:
    dataset = dcmread(sample_path(name))
    if new_uids:
        sop = generate_uid()
        dataset.SOPInstanceUID = sop
        dataset.file_meta.MediaStorageSOPInstanceUID = sop
        dataset.StudyInstanceUID = generate_uid()
        dataset.SeriesInstanceUID = generate_uid()
    if phi:
        for keyword, value in PHI_CANARIES.items():
            setattr(dataset, keyword, value)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return to_bytes(dataset)


_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)


def with_corrupt_length(data: bytes, keyword: str) -> bytes:
    """``data`` (explicit VR little endian Part 10) with ``keyword``'s length field overwritten
    so that its value runs past the end of the bytes, as a sender's broken writer would leave it.

    The element is located by pydicom (its value offset and VR), not by searching for the tag's
    bytes, so only that one length field changes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = dcmread(BytesIO(data), stop_before_pixels=True)
        # Typed as DataElement, but an element nobody accessed is still the RawDataElement read.
        element: object = dataset.get_item(keyword, keep_deferred=True)
    if not isinstance(element, RawDataElement) or element.is_implicit_VR:
        raise ValueError(f"{keyword} is not a raw explicit VR element of this dataset")
    width = 4 if element.VR in _LONG_LENGTH_VRS else 2
    start = element.value_tell - width
    beyond = min(len(data) - element.value_tell + 100, (1 << (8 * width)) - 2)
    if element.value_tell + beyond <= len(data):
        raise ValueError("the dataset is too large for this element's length field to overrun it")
    corrupt = bytearray(data)
    corrupt[start : start + width] = beyond.to_bytes(width, "little")
    return bytes(corrupt)


def canaries_in(text: str) -> list[str]:
    """The PHI canary values (or distinctive parts of them) found in ``text``.

    An all-digit part (the patient id's number, the birth date) counts only as a token of its
    own: as a bare substring it turns up by chance in the logs of a long run — inside a random
    UID, a hash or a timestamp's microseconds (one CI run in a few dozen found "991177" so).
    """
    needles = {
        *PHI_CANARIES.values(),
        "CANARYDOE",
        "Canarydoe",
        "JANEPHI",
        "991177",
        "CANARYREFERRER",
        "CANARYOPERATOR",
        "ACCCANARY",
        "Canary Street",
        "CANARY-OTHER",
    }
    return sorted(needle for needle in needles if _found(needle, text))


def _found(needle: str, text: str) -> bool:
    if not needle.isdigit():
        return needle in text
    return re.search(rf"(?<![0-9A-Za-z.]){needle}(?![0-9A-Za-z])", text) is not None


def unique_token() -> str:
    """A short unique token for topic and AE names."""
    return uuid.uuid4().hex[:8]
