"""validate_and_decode: the validator's own decode hands inference-ready pixels on.

The pixels must be bit for bit what ``decode_pixels`` (the inference stage's decode of the same
bytes) returns, for every sample radstream ships and every pydicom test file the validator
accepts: DICOM native, compressed (JPEG, JPEG 2000, JPEG-LS, RLE, deflated), multi-frame, big
endian, colour, and PNG/JPEG exports.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from schemas.events import ImageFormat
from schemas.settings import ValidationSettings
from streams.validation import (
    ClinicalRules,
    ValidationAccepted,
    ValidationRejected,
    decode_pixels,
    validate_and_decode,
    validate_image,
)
from streams.validation import validator as validator_module
from tests.unit.validation.support import (
    DEFAULT_LIMITS,
    OPEN_RULES,
    PERMISSIVE_LIMITS,
    SAMPLES,
    corpus_files,
)

pytestmark = pytest.mark.requirement("RS-VAL-04", "RS-PRF-02")

SAMPLE_FILES = sorted(path for path in SAMPLES.rglob("*") if path.is_file())
# radstream's samples under the shipped limits; pydicom's corpus (tiny and multi-frame images)
# under permissive ones, as the corpus test runs it.
CASES = [(path, DEFAULT_LIMITS) for path in SAMPLE_FILES] + [
    (path, PERMISSIVE_LIMITS) for path in corpus_files()
]
RLE = "1.2.840.10008.1.2.5"


def _id(case: tuple[Path, ValidationSettings]) -> str:
    path, limits = case
    return f"{path.parent.name}/{path.name}@{'default' if limits is DEFAULT_LIMITS else 'open'}"


def _single_decode(
    data: bytes, limits: ValidationSettings
) -> tuple[ValidationAccepted | ValidationRejected, np.ndarray | None]:
    return validate_and_decode(data, limits=limits, rules=OPEN_RULES)


@functools.cache
def _verdict(path: Path, limits: ValidationSettings) -> ValidationAccepted | ValidationRejected:
    return validate_image(path.read_bytes(), limits=limits, rules=OPEN_RULES)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_pixels_are_exactly_what_inference_decodes(case: tuple[Path, ValidationSettings]) -> None:
    """Same verdict as validate_image; an accepted image's pixels equal decode_pixels' bit for
    bit (dtype, shape and every byte); a rejected one has none."""
    path, limits = case
    data = path.read_bytes()
    outcome, pixels = _single_decode(data, limits)
    assert outcome == _verdict(path, limits)
    if not isinstance(outcome, ValidationAccepted):
        assert pixels is None
        return
    expected = decode_pixels(
        data, outcome.geometry, allow_raw_dicom=limits.allow_raw_dicom, limits=limits
    )
    assert pixels is not None
    assert (pixels.dtype, pixels.shape) == (expected.dtype, expected.shape)
    assert pixels.tobytes() == expected.tobytes()
    assert pixels.base is None, "a view would keep the whole decoded image (all frames) alive"


def test_the_cases_cover_every_kind_of_input() -> None:
    """The parametrised run above is not a hand-picked easy subset: it spans every format,
    compressed and RLE DICOM, multi-frame images, colour and the production limits."""
    accepted = []
    for path, limits in CASES:
        outcome = _verdict(path, limits)
        if isinstance(outcome, ValidationAccepted):
            accepted.append(outcome.geometry)
    formats = {geometry.format for geometry in accepted}
    syntaxes = {geometry.transfer_syntax_uid for geometry in accepted}
    assert formats == {ImageFormat.DICOM, ImageFormat.PNG, ImageFormat.JPEG}
    assert RLE in syntaxes
    assert any(uid and uid.startswith("1.2.840.10008.1.2.4.") for uid in syntaxes)
    assert any(geometry.frames > 1 for geometry in accepted)
    assert any(geometry.samples_per_pixel == 3 for geometry in accepted)
    assert len(accepted) >= 100


def test_rejected_image_has_no_pixels() -> None:
    """A clinical-rule rejection after a successful decode hands nothing on."""
    dicom_only = ClinicalRules.model_validate(
        {"default": {"allowed_formats": ["dicom"], "model_input": {}}}
    )
    data = (SAMPLES / "raster" / "ct_64.png").read_bytes()
    outcome, pixels = validate_and_decode(data, limits=DEFAULT_LIMITS, rules=dicom_only)
    assert isinstance(outcome, ValidationRejected)
    assert [verdict.check for verdict in outcome.verdicts if not verdict.passed] == ["clinical"]
    assert any(verdict.check == "decode" and verdict.passed for verdict in outcome.verdicts)
    assert pixels is None


def test_conversion_failure_is_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turning the decode into model pixels runs inside the checks: a failure there is a
    rejection without pixels, never an exception out of the validator."""

    def broken(*_args: object) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(validator_module, "model_pixels", broken)
    data = (SAMPLES / "dicom" / "ct_small.dcm").read_bytes()
    outcome, pixels = validate_and_decode(data, limits=DEFAULT_LIMITS, rules=OPEN_RULES)
    assert isinstance(outcome, ValidationRejected)
    assert pixels is None
    assert validate_image(data, limits=DEFAULT_LIMITS, rules=OPEN_RULES).accepted
