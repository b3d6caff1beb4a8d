"""decode_pixels: the inference stage's float32 view of validated bytes."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread

from schemas.errors import ErrorCode, RadstreamError
from schemas.events import ImageGeometry
from schemas.settings import ValidationSettings
from streams.validation import ValidationAccepted, decode_pixels, validate_image
from tests.unit.validation.support import (
    CT,
    OPEN_RULES,
    PERMISSIVE_LIMITS,
    SAMPLES,
    edited_dicom,
    pydicom_file_bytes,
)

pytestmark = pytest.mark.requirement("RS-VAL-04")


def _geometry(data: bytes, limits: ValidationSettings = PERMISSIVE_LIMITS) -> ImageGeometry:
    outcome = validate_image(data, limits=limits, rules=OPEN_RULES)
    assert isinstance(outcome, ValidationAccepted), outcome
    return outcome.geometry


def _pydicom_pixels(data: bytes) -> np.ndarray:
    return np.asarray(dcmread(BytesIO(data)).pixel_array)


class TestGreyscale:
    def test_modality_lut_applied(self) -> None:
        """CT stored values become Hounsfield units: stored * slope + intercept."""
        pixels = decode_pixels(CT, _geometry(CT))
        expected = _pydicom_pixels(CT).astype(np.float32) - 1024.0
        assert pixels.dtype == np.float32
        assert pixels.shape == (128, 128)
        np.testing.assert_array_equal(pixels, expected)

    def test_missing_rescale_means_identity(self) -> None:
        """Without RescaleSlope/Intercept the stored values are kept."""
        data = pydicom_file_bytes("MR_small.dcm")
        np.testing.assert_array_equal(decode_pixels(data, _geometry(data)), _pydicom_pixels(data))

    def test_monochrome1_inverted(self) -> None:
        """MONOCHROME1 is inverted in stored units, so higher means brighter, then rescaled."""
        data = pydicom_file_bytes("6154")  # CR, 12 bits stored, slope 0.684, intercept 200
        stored = _pydicom_pixels(data).astype(np.float32)
        expected = (np.float32(4095) - stored) * np.float32(0.684) + np.float32(200)
        np.testing.assert_allclose(decode_pixels(data, _geometry(data)), expected, rtol=1e-6)

    def test_monochrome1_signed(self) -> None:
        """Signed MONOCHROME1 inverts around the signed range."""
        data = edited_dicom("MR_small.dcm", PhotometricInterpretation="MONOCHROME1")
        stored = _pydicom_pixels(data).astype(np.float32)
        np.testing.assert_array_equal(decode_pixels(data, _geometry(data)), np.float32(-1) - stored)

    def test_multiframe_first_frame(self) -> None:
        """Multi-frame images give their first frame only."""
        data = pydicom_file_bytes("rtdose.dcm")
        pixels = decode_pixels(data, _geometry(data))
        assert pixels.shape == (10, 10)
        np.testing.assert_allclose(pixels, _pydicom_pixels(data)[0].astype(np.float32))

    def test_png(self) -> None:
        """A greyscale PNG decodes to (H, W) with its 8-bit values."""
        data = (SAMPLES / "raster" / "ct_64.png").read_bytes()
        pixels = decode_pixels(data, _geometry(data))
        assert pixels.shape == (64, 64)
        assert 0 <= pixels.min() <= pixels.max() <= 255


class TestColour:
    def test_ybr_to_rgb(self) -> None:
        """YBR JPEG DICOM decodes to (H, W, 3) RGB, as pydicom converts it."""
        data = (SAMPLES / "dicom" / "ot_rgb_jpeg_ybr.dcm").read_bytes()
        pixels = decode_pixels(data, _geometry(data))
        assert pixels.shape == (100, 100, 3)
        np.testing.assert_array_equal(pixels, _pydicom_pixels(data).astype(np.float32))

    def test_jpeg_rgb(self) -> None:
        """A colour JPEG decodes to (H, W, 3)."""
        data = (SAMPLES / "raster" / "us_rgb_320x240.jpg").read_bytes()
        assert decode_pixels(data, _geometry(data)).shape == (240, 320, 3)


class TestSafety:
    def test_bytes_must_match_geometry(self) -> None:
        """Bytes that are not the validated image are refused."""
        mr = pydicom_file_bytes("MR_small.dcm")
        with pytest.raises(RadstreamError) as caught:
            decode_pixels(mr, _geometry(CT))
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED

    def test_limits_passed_in_apply(self) -> None:
        """Explicit limits are enforced again (a changed policy refuses a stored image)."""
        with pytest.raises(RadstreamError) as caught:
            decode_pixels(CT, _geometry(CT), limits=ValidationSettings(min_dimension=256))
        assert caught.value.code is ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE

    def test_raw_dicom_flag(self) -> None:
        """Raw DICOM decodes only when allowed, as in validation."""
        raw = (SAMPLES / "bad" / "raw_no_preamble.dcm").read_bytes()
        geometry = _geometry(raw)
        assert decode_pixels(raw, geometry, allow_raw_dicom=True).shape == (128, 128)
        with pytest.raises(RadstreamError) as caught:
            decode_pixels(raw, geometry)
        assert caught.value.code is ErrorCode.DICOM_NOT_PART10

    def test_zero_slope_refused(self) -> None:
        """A zero RescaleSlope is refused before decoding."""
        geometry = _geometry(CT)
        with pytest.raises(RadstreamError) as caught:
            decode_pixels(edited_dicom("CT_small.dcm", RescaleSlope=0), geometry)
        assert caught.value.code is ErrorCode.DICOM_INVALID_VALUE
