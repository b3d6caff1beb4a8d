"""Hostile inputs: bombs and huge headers are refused without large allocations; traversal fails."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.errors import ErrorCode, InputValidationError
from streams.validation import (
    ValidationOutcome,
    ValidationRejected,
    resolve_image_uri,
    validate_image,
)
from tests.unit.validation.support import DEFAULT_LIMITS, OPEN_RULES, SAMPLES

pytestmark = pytest.mark.requirement("RS-VAL-03", "RS-VAL-07")

BAD = SAMPLES / "bad"
PEAK_LIMIT_BYTES = 4 * 1024 * 1024  # a 65535x65535 decode would need 4 GiB; a header check ~0


def _peak(action: Callable[[], ValidationOutcome]) -> tuple[ValidationOutcome, int]:
    """Run ``action`` and return its result and the peak Python allocation it caused."""
    tracemalloc.start()
    try:
        result = action()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("png_bomb_65535.png", ErrorCode.IMAGE_DECOMPRESSION_BOMB),
        ("jpeg_bomb_65535.jpg", ErrorCode.IMAGE_DECOMPRESSION_BOMB),
        ("deflate_bomb.dcm", ErrorCode.IMAGE_DECOMPRESSION_BOMB),
        ("huge_rows_columns.dcm", ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE),
    ],
)
def test_bombs_refused_without_allocating(name: str, code: ErrorCode) -> None:
    """Each bomb gets its code while the peak allocation stays under a few MB."""
    data = (BAD / name).read_bytes()
    outcome, peak = _peak(lambda: validate_image(data, limits=DEFAULT_LIMITS, rules=OPEN_RULES))
    assert isinstance(outcome, ValidationRejected)
    assert outcome.error_code is code
    assert peak < PEAK_LIMIT_BYTES


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty.dcm", ErrorCode.IMAGE_EMPTY),
        ("not_an_image.bin", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        ("truncated_ct.dcm", ErrorCode.PIXEL_DATA_TRUNCATED),
        ("sr_no_pixels.dcm", ErrorCode.PIXEL_DATA_MISSING),
        ("raw_no_preamble.dcm", ErrorCode.DICOM_NOT_PART10),
        ("palette_color.dcm", ErrorCode.PHOTOMETRIC_UNSUPPORTED),
    ],
)
def test_bad_samples_get_their_codes(name: str, code: ErrorCode) -> None:
    """Every crafted sample in samples/bad is refused with the code its README promises."""
    outcome = validate_image((BAD / name).read_bytes(), limits=DEFAULT_LIMITS, rules=OPEN_RULES)
    assert isinstance(outcome, ValidationRejected)
    assert outcome.error_code is code


def test_wrong_checksum() -> None:
    """A declared sha256 of other bytes is CHECKSUM_MISMATCH."""
    data = (SAMPLES / "dicom" / "ct_small.dcm").read_bytes()
    other = hashlib.sha256(b"other").hexdigest()
    outcome = validate_image(data, limits=DEFAULT_LIMITS, rules=OPEN_RULES, declared_sha256=other)
    assert isinstance(outcome, ValidationRejected)
    assert outcome.error_code is ErrorCode.CHECKSUM_MISMATCH


def test_wrong_declared_size() -> None:
    """A declared size_bytes that differs from the bytes read is IMAGE_SIZE_MISMATCH."""
    data = (SAMPLES / "dicom" / "ct_small.dcm").read_bytes()
    outcome = validate_image(data, limits=DEFAULT_LIMITS, rules=OPEN_RULES, declared_size=1)
    assert isinstance(outcome, ValidationRejected)
    assert outcome.error_code is ErrorCode.IMAGE_SIZE_MISMATCH


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A storage root with an image, next to a secret outside it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "image.dcm").write_bytes(b"image")
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(tmp_path / "secret")
    return root


@pytest.mark.parametrize(
    ("uri_template", "code"),
    [
        ("file://{root}/../secret", ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS),
        ("file://{root}/%2e%2e/secret", ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS),
        ("file://{root}/%2E%2E%2Fsecret", ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS),
        ("file://{root}/escape", ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS),
        ("file:///etc/passwd", ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS),
        ("file://{root}/image.dcm%00.png", ErrorCode.STORAGE_PATH_OUTSIDE_ROOTS),
        ("http://example.org{root}/image.dcm", ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED),
        ("file://attacker.example{root}/image.dcm", ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED),
        ("FILE+ssh://{root}/image.dcm", ErrorCode.STORAGE_URI_SCHEME_UNSUPPORTED),
    ],
)
def test_path_traversal_refused(storage: Path, uri_template: str, code: ErrorCode) -> None:
    """Traversal by .., percent-encoding, symlink, absolute path, NUL or scheme is refused."""
    with pytest.raises(InputValidationError) as caught:
        resolve_image_uri(uri_template.format(root=storage), [storage])
    assert caught.value.code is code
    assert str(storage.parent) not in caught.value.reason  # reasons never echo paths
