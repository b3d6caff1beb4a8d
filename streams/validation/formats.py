"""Format detection and header-only size parsing from the bytes themselves.

The container format is decided from magic numbers, never from a file name or the event's
``content_type`` hint: a router can be wrong, an attacker can lie. PNG and JPEG dimensions are
read from their headers (IHDR, SOF) with bounded loops, so a 65535x65535 header is seen before
any decoder allocates a pixel.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

from schemas.errors import ErrorCode, error_for
from schemas.events import ImageFormat

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
DICOM_PREAMBLE_LENGTH = 128
DICOM_PREFIX = b"DICM"

# Value representations of PS3.5 table 6.2-1: the raw-DICOM heuristic accepts only these.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)
# Groups a dataset without preamble plausibly starts with (file meta or identifying module).
_RAW_FIRST_GROUPS = frozenset({0x0002, 0x0008})
# JPEG start-of-frame markers that carry dimensions (SOF0..SOF15 minus DHT/JPG/DAC, plus the
# JPEG-LS SOF55), as used by baseline, extended, progressive, lossless and JPEG-LS streams.
_JPEG_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)})
_JPEG_SOF |= frozenset(range(0xCD, 0xD0)) | {0xF7}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn have no length
_MAX_JPEG_SEGMENTS = 4096  # a real header has a few dozen; bounds the walk on hostile input


class RawDicomEncoding(StrEnum):
    """How a dataset without preamble appears to be encoded (from its first element)."""

    IMPLICIT_LITTLE = "1.2.840.10008.1.2"
    EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
    EXPLICIT_BIG = "1.2.840.10008.1.2.2"


@dataclass(frozen=True, slots=True)
class DetectedFormat:
    """The container format found in the bytes, and for raw DICOM its apparent encoding."""

    format: ImageFormat
    raw_dicom: RawDicomEncoding | None = None


@dataclass(frozen=True, slots=True)
class RasterHeader:
    """Dimensions and layout a PNG or JPEG header declares (nothing decoded)."""

    width: int
    height: int
    components: int
    bit_depth: int


def is_part10(data: bytes) -> bool:
    """Whether the bytes carry the Part 10 preamble followed by ``DICM``."""
    end = DICOM_PREAMBLE_LENGTH + len(DICOM_PREFIX)
    return data[DICOM_PREAMBLE_LENGTH:end] == DICOM_PREFIX


def guess_raw_dicom(data: bytes) -> RawDicomEncoding | None:
    """Guess whether the bytes start a DICOM dataset without preamble, and how it is encoded.

    The heuristic looks at the first data element only: a plausible group (0002 or 0008), a
    small element number, and either a known two-letter VR (explicit) or a length that fits
    in the data (implicit).
    """
    if len(data) < 8:
        return None
    group_le, element_le = struct.unpack_from("<HH", data)
    group_be, element_be = struct.unpack_from(">HH", data)
    vr = data[4:6]
    if group_le in _RAW_FIRST_GROUPS and element_le < 0x0100:
        if vr in _VRS:
            return RawDicomEncoding.EXPLICIT_LITTLE
        (length,) = struct.unpack_from("<I", data, 4)
        if 0 < length <= len(data) - 8:
            return RawDicomEncoding.IMPLICIT_LITTLE
    if group_be in _RAW_FIRST_GROUPS and element_be < 0x0100 and vr in _VRS:
        return RawDicomEncoding.EXPLICIT_BIG
    return None


def detect_format(data: bytes, *, allow_raw_dicom: bool = False) -> DetectedFormat:
    """Detect DICOM, PNG or JPEG from the bytes.

    Raises:
        InputValidationError: ``DICOM_NOT_PART10`` for a dataset without preamble when raw
            DICOM is not allowed, ``IMAGE_FORMAT_UNSUPPORTED`` for anything else unknown.
    """
    if is_part10(data):
        return DetectedFormat(ImageFormat.DICOM)
    if data.startswith(PNG_SIGNATURE):
        return DetectedFormat(ImageFormat.PNG)
    if data.startswith(JPEG_SOI):
        return DetectedFormat(ImageFormat.JPEG)
    raw = guess_raw_dicom(data)
    if raw is not None:
        if not allow_raw_dicom:
            raise error_for(
                ErrorCode.DICOM_NOT_PART10,
                "DICOM dataset without Part 10 preamble; raw datasets are not allowed",
            )
        return DetectedFormat(ImageFormat.DICOM, raw_dicom=raw)
    raise error_for(
        ErrorCode.IMAGE_FORMAT_UNSUPPORTED, "content is not DICOM, PNG or JPEG (magic number)"
    )


def png_header(data: bytes) -> RasterHeader:
    """Read width, height, channels and bit depth from a PNG's IHDR chunk.

    Raises:
        InputValidationError: ``IMAGE_MALFORMED`` when the first chunk is not a valid IHDR.
    """
    # Signature (8) + length (4) + b"IHDR" (4) + 13 data bytes.
    if len(data) < 33 or data[12:16] != b"IHDR" or data[8:12] != b"\x00\x00\x00\x0d":
        raise error_for(ErrorCode.IMAGE_MALFORMED, "PNG without a valid IHDR chunk")
    width, height, bit_depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour_type)
    if channels is None or width == 0 or height == 0:
        raise error_for(ErrorCode.IMAGE_MALFORMED, "PNG IHDR has an invalid size or colour type")
    return RasterHeader(width=width, height=height, components=channels, bit_depth=bit_depth)


def jpeg_header(data: bytes) -> RasterHeader:
    """Read width, height, components and precision from a JPEG (or JPEG-LS) SOF segment.

    Raises:
        InputValidationError: ``IMAGE_MALFORMED`` when no SOF segment is found in the header.
    """
    offset = 2
    for _ in range(_MAX_JPEG_SEGMENTS):
        # Markers may be preceded by any number of 0xFF fill bytes.
        while offset < len(data) and data[offset] == 0xFF and offset + 1 < len(data):
            if data[offset + 1] != 0xFF:
                break
            offset += 1
        if offset + 4 > len(data) or data[offset] != 0xFF:
            break
        marker = data[offset + 1]
        if marker in _JPEG_STANDALONE:
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in _JPEG_SOF:
            if length < 8 or offset + 10 > len(data):
                break
            precision, height, width, components = struct.unpack_from(">BHHB", data, offset + 4)
            if width == 0 or height == 0 or components == 0:
                break
            return RasterHeader(
                width=width, height=height, components=components, bit_depth=precision
            )
        if marker in (0xD9, 0xDA) or length < 2:  # EOI or scan data before any SOF
            break
        offset += 2 + length
    raise error_for(ErrorCode.IMAGE_MALFORMED, "JPEG without a readable start-of-frame header")


def j2k_dimensions(codestream: bytes) -> tuple[int, int] | None:
    """Return (width, height) from a JPEG 2000 codestream's SIZ segment, or None if absent.

    Handles a bare codestream and one wrapped in a JP2 box structure.
    """
    start = codestream.find(b"\xff\x4f\xff\x51", 0, 4096)
    if start < 0 or start + 24 > len(codestream):
        return None
    # SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4)
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", codestream, start + 8)
    return max(xsiz - xosiz, 0), max(ysiz - yosiz, 0)
