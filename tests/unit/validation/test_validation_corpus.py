"""Every file shipped inside pydicom goes through validate_image: a verdict each, no raise."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from schemas.errors import ErrorCode
from streams.validation import ValidationAccepted, ValidationRejected, validate_image
from tests.unit.validation.support import OPEN_RULES, PERMISSIVE_LIMITS, corpus_files

pytestmark = pytest.mark.requirement("RS-VAL-04", "RS-VAL-05")

# Files pydicom itself can read that radstream refuses on purpose, and why.
EXPECTED_REJECTIONS = {
    "JPEG-lossy.dcm": ErrorCode.IMAGE_MALFORMED,  # 12-bit stream pydicom documents as broken
    "JPEG2000-embedded-sequence-delimiter.dcm": ErrorCode.IMAGE_DECOMPRESSION_BOMB,  # SIZ garbled
    "MR_small_padded.dcm": ErrorCode.DICOM_INVALID_VALUE,  # 128 bytes beyond the header's size
    "MR_truncated.dcm": ErrorCode.PIXEL_DATA_TRUNCATED,
    "badVR.dcm": ErrorCode.DICOM_INVALID_VALUE,  # NumberOfFrames "1A"
    "examples_palette.dcm": ErrorCode.PHOTOMETRIC_UNSUPPORTED,  # PALETTE COLOR refused
    "meta_missing_tsyntax.dcm": ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING,
}
CORPUS = corpus_files()


def _pydicom_view(path: Path) -> tuple[bool, tuple[int, int, int] | None]:
    """(is Part 10 DICOM, (rows, columns, frames) when it has an image pixel module)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = dcmread(path, stop_before_pixels=True)
            if "Rows" not in dataset:
                return True, None
            frames = dataset.get("NumberOfFrames") or 1
            return True, (int(dataset.Rows), int(dataset.Columns), int(str(frames).strip("A")))
    except (InvalidDicomError, OSError):
        return False, None


def test_corpus_is_the_full_pydicom_set() -> None:
    """The parametrised run covers the whole bundled corpus (not a hand-picked subset)."""
    assert sum(1 for path in CORPUS if _pydicom_view(path)[0]) >= 80


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_corpus_file_gets_the_right_verdict(path: Path) -> None:
    """Accepted with pydicom's geometry, or rejected with the code the file deserves."""
    outcome = validate_image(path.read_bytes(), limits=PERMISSIVE_LIMITS, rules=OPEN_RULES)
    is_dicom, geometry = _pydicom_view(path)
    if path.name in EXPECTED_REJECTIONS:
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is EXPECTED_REJECTIONS[path.name]
    elif geometry is not None:
        assert isinstance(outcome, ValidationAccepted), outcome
        rows, columns, frames = geometry
        assert (outcome.geometry.height, outcome.geometry.width) == (rows, columns)
        assert outcome.geometry.frames == frames
    elif is_dicom or path.name in {
        "ExplVR_BigEndNoMeta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "rtstruct.dcm",
    }:
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is ErrorCode.PIXEL_DATA_MISSING
    else:
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is ErrorCode.IMAGE_FORMAT_UNSUPPORTED
