"""Format detection from magic numbers, and header-only size parsing of PNG, JPEG and J2K."""

from __future__ import annotations

import struct

import pytest

from schemas.errors import ErrorCode, InputValidationError
from schemas.events import ImageFormat
from streams.validation.formats import (
    RawDicomEncoding,
    detect_format,
    guess_raw_dicom,
    j2k_dimensions,
    jpeg_header,
    png_header,
)
from tests.unit.validation.support import SAMPLES, pydicom_file_bytes

pytestmark = pytest.mark.requirement("RS-VAL-01", "RS-VAL-03")

CT = pydicom_file_bytes("CT_small.dcm")
RAW_CT = (SAMPLES / "bad" / "raw_no_preamble.dcm").read_bytes()


class TestDetectFormat:
    def test_part10_is_dicom(self) -> None:
        """The 128-byte preamble followed by DICM means DICOM."""
        assert detect_format(CT).format is ImageFormat.DICOM

    def test_png_signature(self) -> None:
        """The eight-byte PNG signature means PNG."""
        assert detect_format((SAMPLES / "raster" / "ct_64.png").read_bytes()).format is (
            ImageFormat.PNG
        )

    def test_jpeg_soi(self) -> None:
        """FF D8 FF means JPEG."""
        assert detect_format((SAMPLES / "raster" / "ct_64.jpg").read_bytes()).format is (
            ImageFormat.JPEG
        )

    def test_raw_dicom_refused_by_default(self) -> None:
        """A dataset without preamble is DICOM_NOT_PART10 unless deliberately allowed."""
        with pytest.raises(InputValidationError) as caught:
            detect_format(RAW_CT)
        assert caught.value.code is ErrorCode.DICOM_NOT_PART10

    def test_raw_dicom_allowed(self) -> None:
        """With raw DICOM allowed, the encoding guessed from the first element is returned."""
        detected = detect_format(RAW_CT, allow_raw_dicom=True)
        assert detected.raw_dicom is RawDicomEncoding.EXPLICIT_LITTLE

    def test_unknown_bytes_unsupported(self) -> None:
        """Anything else is IMAGE_FORMAT_UNSUPPORTED, whatever a file name would say."""
        with pytest.raises(InputValidationError) as caught:
            detect_format(b"GIF89a" + b"\x00" * 100)
        assert caught.value.code is ErrorCode.IMAGE_FORMAT_UNSUPPORTED


class TestGuessRawDicom:
    def test_implicit_little_endian(self) -> None:
        """Group 0008 with a plausible 4-byte length reads as implicit VR little endian."""
        data = struct.pack("<HHI", 0x0008, 0x0005, 10) + b"ISO_IR 100"
        assert guess_raw_dicom(data) is RawDicomEncoding.IMPLICIT_LITTLE

    def test_explicit_big_endian(self) -> None:
        """Group 0008 in big-endian order with a VR reads as explicit VR big endian."""
        data = struct.pack(">HH", 0x0008, 0x0005) + b"CS" + struct.pack(">H", 10) + b"ISO_IR 100"
        assert guess_raw_dicom(data) is RawDicomEncoding.EXPLICIT_BIG

    def test_short_input(self) -> None:
        """Fewer than eight bytes cannot be a data element."""
        assert guess_raw_dicom(b"\x08\x00") is None

    def test_implausible_length(self) -> None:
        """An implicit element longer than the data is not taken for DICOM."""
        assert guess_raw_dicom(struct.pack("<HHI", 0x0008, 0x0005, 10_000)) is None


class TestPngHeader:
    def test_reads_ihdr(self) -> None:
        """Width, height and channels come from IHDR."""
        header = png_header((SAMPLES / "raster" / "us_rgb_320x240.png").read_bytes())
        assert (header.width, header.height, header.components) == (320, 240, 3)

    def test_missing_ihdr(self) -> None:
        """A signature without an IHDR chunk is malformed."""
        with pytest.raises(InputValidationError) as caught:
            png_header(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED

    def test_bad_colour_type(self) -> None:
        """An IHDR with an undefined colour type is malformed."""
        ihdr = struct.pack(">IIBBBBB", 10, 10, 8, 5, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00" * 4
        with pytest.raises(InputValidationError):
            png_header(data)


class TestJpegHeader:
    def test_reads_sof(self) -> None:
        """Dimensions come from the SOF segment after the APP segments."""
        header = jpeg_header((SAMPLES / "raster" / "ct_256.jpg").read_bytes())
        assert (header.width, header.height, header.components, header.bit_depth) == (
            256,
            256,
            1,
            8,
        )

    def test_fill_bytes_and_standalone_markers(self) -> None:
        """0xFF fill bytes and length-less markers are skipped on the way to SOF."""
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 20, 30, 1) + b"\x01\x11\x00"
        data = b"\xff\xd8" + b"\xff\xff\xd0" + b"\xff\x01" + sof
        header = jpeg_header(data)
        assert (header.width, header.height) == (30, 20)

    def test_scan_before_frame(self) -> None:
        """Scan data before any SOF segment is malformed."""
        with pytest.raises(InputValidationError) as caught:
            jpeg_header(b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 10)
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED

    def test_truncated(self) -> None:
        """A header cut before SOF is malformed."""
        with pytest.raises(InputValidationError):
            jpeg_header(b"\xff\xd8\xff\xe0\x00\x10JFIF")

    def test_zero_size_frame(self) -> None:
        """A SOF declaring zero width is malformed."""
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 0, 0, 1) + b"\x01\x11\x00"
        with pytest.raises(InputValidationError):
            jpeg_header(b"\xff\xd8" + sof)


class TestJ2kDimensions:
    def test_bare_codestream(self) -> None:
        """Xsiz - XOsiz and Ysiz - YOsiz of the SIZ segment are the image size."""
        siz = b"\xff\x4f\xff\x51" + struct.pack(">HHIIII", 41, 0, 300, 200, 10, 20)
        assert j2k_dimensions(siz + b"\x00" * 40) == (290, 180)

    def test_no_siz(self) -> None:
        """Bytes without SOC+SIZ give no dimensions."""
        assert j2k_dimensions(b"\x00" * 64) is None
