"""The one decoding path shared by validation and the inference stage's preprocessing.

Each step either returns or raises a :class:`~schemas.errors.RadstreamError` with a stable code
and a reason built only from numbers, codes and controlled vocabulary (never from free-text
header values, which may hold patient data). The steps run in a safe order:

1. :func:`read_header` — detect the format from the bytes and read the header only (PNG IHDR,
   JPEG SOF, DICOM with ``stop_before_pixels=True``); a deflated DICOM is inflated with a bound.
2. :func:`check_geometry` — refuse decompression bombs, too many frames and out-of-range
   dimensions *before* anything is allocated for pixels.
3. :func:`check_pixel_format` — bits, representation, photometric interpretation and whether an
   installed plugin decodes the transfer syntax.
4. :func:`load_pixels` — read the full dataset, check that pixel data is present with the
   length the header implies (and that codestream headers agree with Rows/Columns).
5. :func:`check_stored_values` — stored values within what BitsStored allows.
6. :func:`decode_frames` — decode to an array of shape (frames, rows, columns, samples).

pydicom and Pillow warnings are silenced inside these steps (they would otherwise become
test errors and may quote header values); Pillow's decompression-bomb warning is turned into
an error instead, and ``Image.MAX_IMAGE_PIXELS`` is never changed.
"""

from __future__ import annotations

import math
import re
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from schemas.errors import ErrorCode, RadstreamError, error_for
from schemas.events import ImageFormat
from schemas.settings import ValidationSettings
from streams.validation.formats import (
    DetectedFormat,
    RasterHeader,
    RawDicomEncoding,
    detect_format,
    j2k_dimensions,
    jpeg_header,
    png_header,
)

# Decoded pixel count above which a compressed image is treated as a decompression bomb,
# whatever the configured dimension limits: Pillow's own threshold (about 89 million pixels).
BOMB_PIXEL_THRESHOLD: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
SUPPORTED_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
)
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422"})
_J2K_COLOUR = frozenset({"YBR_RCT", "YBR_ICT"})
_J2K_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)
_JPEG_FAMILY_PREFIX = "1.2.840.10008.1.2.4."
_UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PNG_MODES: dict[str, str | None] = {
    "1": "L",
    "L": "L",
    "LA": "L",
    "I;16": None,
    "I;16B": None,
    "I": None,
}
_PNG_MODES |= {"P": "RGB", "PA": "RGB", "RGB": "RGB", "RGBA": "RGB"}
_JPEG_MODES: dict[str, str | None] = {"L": "L", "RGB": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}
_PIXEL_DATA_TAG = 0x7FE00010
_INFLATE_CHUNK = 64 * 1024
_FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """Everything known about an image before its pixels are touched."""

    format: ImageFormat
    width: int
    height: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int | None
    bits_stored: int | None
    signed: bool
    photometric: str | None
    transfer_syntax_uid: str | None
    compressed: bool
    dataset: Dataset | None = None
    raster: RasterHeader | None = None
    raw_dicom: RawDicomEncoding | None = None

    @property
    def declared_pixels(self) -> int:
        """Pixels the header claims across every frame."""
        return self.width * self.height * self.frames


@dataclass(frozen=True, slots=True)
class PixelSource:
    """The bytes to decode: the full DICOM dataset, or the PNG/JPEG file itself."""

    header: ImageHeader
    data: bytes
    dataset: Dataset | None = None


@contextmanager
def library_warnings_guarded() -> Iterator[None]:
    """Silence library warnings but make Pillow's decompression-bomb warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def fail(code: ErrorCode, reason: str) -> RadstreamError:
    """Build the error for ``code`` (a short alias so each check reads as one line)."""
    return error_for(code, reason)


# ------------------------------------------------------------------------------ step 1: header


def read_header(
    data: bytes, *, allow_raw_dicom: bool = False, max_inflated_bytes: int = 64 << 20
) -> ImageHeader:
    """Detect the format and read the image header, without touching pixel data."""
    detected = detect_format(data, allow_raw_dicom=allow_raw_dicom)
    if detected.format is ImageFormat.PNG:
        raster = png_header(data)
        samples = 1 if raster.components <= 2 else 3
        dtype_bits = 16 if raster.bit_depth == 16 and samples == 1 else 8
        return _raster_header(ImageFormat.PNG, raster, samples, dtype_bits)
    if detected.format is ImageFormat.JPEG:
        raster = jpeg_header(data)
        samples = 1 if raster.components == 1 else 3
        return _raster_header(ImageFormat.JPEG, raster, samples, raster.bit_depth)
    return _dicom_header(data, detected, max_inflated_bytes)


def _raster_header(fmt: ImageFormat, raster: RasterHeader, samples: int, bits: int) -> ImageHeader:
    return ImageHeader(
        format=fmt,
        width=raster.width,
        height=raster.height,
        frames=1,
        samples_per_pixel=samples,
        bits_allocated=bits,
        bits_stored=bits,
        signed=False,
        photometric="MONOCHROME2" if samples == 1 else "RGB",
        transfer_syntax_uid=None,
        compressed=True,
        raster=raster,
    )


def _dicom_header(data: bytes, detected: DetectedFormat, max_inflated: int) -> ImageHeader:
    if detected.raw_dicom is None:
        transfer_syntax = _part10_transfer_syntax(data, max_inflated)
    else:
        transfer_syntax = detected.raw_dicom.value
    dataset = read_dicom(data, detected.raw_dicom, stop_before_pixels=True)
    if "Rows" not in dataset and "Columns" not in dataset:
        raise fail(ErrorCode.PIXEL_DATA_MISSING, "DICOM dataset has no image pixel module")
    rows = _required_int(dataset, "Rows")
    columns = _required_int(dataset, "Columns")
    frames = _optional_int(dataset, "NumberOfFrames") or 1
    samples = _optional_int(dataset, "SamplesPerPixel") or 1
    bits_allocated = _optional_int(dataset, "BitsAllocated")
    bits_stored = _optional_int(dataset, "BitsStored")
    representation = _optional_int(dataset, "PixelRepresentation") or 0
    if min(rows, columns) < 1 or frames < 1 or samples < 1:
        raise fail(ErrorCode.DICOM_INVALID_VALUE, "Rows, Columns, frames or samples not positive")
    if representation not in (0, 1):
        raise fail(ErrorCode.PIXEL_FORMAT_UNSUPPORTED, "PixelRepresentation must be 0 or 1")
    return ImageHeader(
        format=ImageFormat.DICOM,
        width=columns,
        height=rows,
        frames=frames,
        samples_per_pixel=samples,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=representation == 1,
        photometric=_photometric(dataset),
        transfer_syntax_uid=transfer_syntax,
        compressed=_is_compressed(transfer_syntax),
        dataset=dataset,
        raw_dicom=detected.raw_dicom,
    )


def _syntax_uid(transfer_syntax: str) -> UID:
    """``UID(transfer_syntax)`` with pydicom's invalid-value warning (which quotes it) silenced."""
    with library_warnings_guarded():
        return UID(transfer_syntax)


def _is_compressed(transfer_syntax: str) -> bool:
    """Whether pixel data expands on decoding; unknown syntaxes count as compressed."""
    uid = _syntax_uid(transfer_syntax)
    if not uid.is_transfer_syntax:
        return True
    return bool(uid.is_encapsulated or uid.is_deflated)


def _part10_transfer_syntax(data: bytes, max_inflated: int) -> str:
    """Read the file meta group: the transfer syntax must be there; inflate with a bound."""
    stream = BytesIO(data)
    try:
        with library_warnings_guarded():
            read_preamble(stream, force=False)
            meta = _read_file_meta_info(stream)
            # Values convert lazily on access, so read them while warnings are guarded.
            transfer_syntax = str(meta.get("TransferSyntaxUID", "") or "").strip()
    except Exception as exc:
        raise fail(ErrorCode.IMAGE_MALFORMED, "DICOM file meta information unreadable") from exc
    if not transfer_syntax:
        raise fail(ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING, "file meta has no TransferSyntaxUID")
    if not _UID_PATTERN.match(transfer_syntax) or len(transfer_syntax) > 64:
        raise fail(ErrorCode.DICOM_INVALID_VALUE, "TransferSyntaxUID is not a valid UID")
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        _check_inflated_size(data[stream.tell() :], max_inflated)
    return transfer_syntax


def _check_inflated_size(deflated: bytes, max_inflated: int) -> None:
    """Inflate in small steps, counting and discarding the output, before pydicom inflates it.

    A deflate bomb is refused after at most ``max_inflated`` bytes of work and with only one
    64 KiB chunk alive at a time.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, deflated
    try:
        while pending and not inflater.eof:
            total += len(inflater.decompress(pending, _INFLATE_CHUNK))
            if total > max_inflated:
                raise fail(
                    ErrorCode.IMAGE_DECOMPRESSION_BOMB,
                    f"deflated DICOM dataset inflates beyond {max_inflated} bytes",
                )
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise fail(ErrorCode.IMAGE_MALFORMED, "deflated DICOM dataset is corrupt") from exc


def read_dicom(data: bytes, raw: RawDicomEncoding | None, *, stop_before_pixels: bool) -> Dataset:
    """Parse DICOM bytes without ``force``: Part 10 through dcmread, raw datasets explicitly."""
    try:
        with library_warnings_guarded():
            if raw is None:
                return dcmread(BytesIO(data), stop_before_pixels=stop_before_pixels, force=False)
            dataset = read_dataset(
                BytesIO(data),
                is_implicit_VR=raw is RawDicomEncoding.IMPLICIT_LITTLE,
                is_little_endian=raw is not RawDicomEncoding.EXPLICIT_BIG,
                stop_when=_at_pixel_data if stop_before_pixels else None,
            )
            dataset.file_meta = FileMetaDataset()
            dataset.file_meta.TransferSyntaxUID = UID(raw.value)
            dataset.set_original_encoding(
                raw is RawDicomEncoding.IMPLICIT_LITTLE, raw is not RawDicomEncoding.EXPLICIT_BIG
            )
            return dataset
    except Exception as exc:
        raise fail(ErrorCode.IMAGE_MALFORMED, "DICOM dataset could not be parsed") from exc


def _at_pixel_data(tag: BaseTag, _vr: str | None, _length: int) -> bool:
    return int(tag) in (_PIXEL_DATA_TAG, *_FLOAT_PIXEL_TAGS)


def element_value(dataset: Dataset, keyword: str) -> Any:
    """Return an element's value, or None when absent; a value pydicom cannot convert fails."""
    try:
        with library_warnings_guarded():
            if keyword not in dataset:
                return None
            return dataset[keyword].value
    except Exception as exc:
        raise fail(ErrorCode.DICOM_INVALID_VALUE, f"{keyword} has an invalid value") from exc


def _optional_int(dataset: Dataset, keyword: str) -> int | None:
    value = element_value(dataset, keyword)
    if value is None or value == "":
        return None
    number = _as_int(value)
    if number is None:
        raise fail(ErrorCode.DICOM_INVALID_VALUE, f"{keyword} is not a valid integer")
    return number


def _as_int(value: Any) -> int | None:
    """An integral number, or None for text, multiple values or fractions."""
    if isinstance(value, (bytes, list, tuple)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def _required_int(dataset: Dataset, keyword: str) -> int:
    value = _optional_int(dataset, keyword)
    if value is None:
        raise fail(ErrorCode.DICOM_INVALID_VALUE, f"{keyword} is missing")
    return value


def optional_float(dataset: Dataset, keyword: str) -> float | None:
    """First numeric value of a (possibly multi-valued) element, None when absent or bad."""
    try:
        value = element_value(dataset, keyword)
    except RadstreamError:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _photometric(dataset: Dataset) -> str | None:
    value = element_value(dataset, "PhotometricInterpretation")
    text = str(value).strip().upper() if value is not None else ""
    return text or None


# ---------------------------------------------------------------------------- step 2: geometry


def check_geometry(header: ImageHeader, limits: ValidationSettings) -> None:
    """Refuse bombs, excess frames and out-of-range dimensions before allocating pixels."""
    if header.compressed and header.declared_pixels > BOMB_PIXEL_THRESHOLD:
        raise fail(
            ErrorCode.IMAGE_DECOMPRESSION_BOMB,
            f"header declares {header.width}x{header.height}x{header.frames} pixels, above "
            f"the safe decode limit of {BOMB_PIXEL_THRESHOLD}",
        )
    if header.frames > limits.max_frames:
        raise fail(
            ErrorCode.MULTIFRAME_NOT_ALLOWED,
            f"{header.frames} frames; at most {limits.max_frames} allowed",
        )
    low, high = limits.min_dimension, limits.max_dimension
    if not (low <= header.width <= high and low <= header.height <= high):
        raise fail(
            ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE,
            f"{header.width}x{header.height} outside {low}..{high}",
        )


# ------------------------------------------------------------------------ step 3: pixel format


def check_pixel_format(header: ImageHeader) -> None:
    """Refuse unsupported bit layouts, photometric interpretations and transfer syntaxes."""
    if header.format is not ImageFormat.DICOM:
        if header.bits_allocated not in (8, 16):
            raise fail(
                ErrorCode.PIXEL_FORMAT_UNSUPPORTED,
                f"{header.format.value} with {header.bits_allocated}-bit samples",
            )
        return
    _check_transfer_syntax(str(header.transfer_syntax_uid))
    _check_photometric(header)
    allocated, stored = header.bits_allocated, header.bits_stored
    if allocated not in (1, 8, 16, 32):
        raise fail(ErrorCode.PIXEL_FORMAT_UNSUPPORTED, f"BitsAllocated {allocated} unsupported")
    if stored is None or not 1 <= stored <= allocated:
        raise fail(
            ErrorCode.PIXEL_FORMAT_UNSUPPORTED, "BitsStored missing or larger than BitsAllocated"
        )
    dataset = header.dataset
    if dataset is None:  # DICOM headers always carry their dataset; narrow without assert
        raise fail(ErrorCode.IMAGE_MALFORMED, "DICOM header without dataset")
    high_bit = _optional_int(dataset, "HighBit")
    if high_bit is not None and high_bit != stored - 1:
        raise fail(ErrorCode.PIXEL_FORMAT_UNSUPPORTED, "HighBit is not BitsStored - 1")
    if allocated == 1 and header.samples_per_pixel != 1:
        raise fail(ErrorCode.PIXEL_FORMAT_UNSUPPORTED, "1-bit pixels must be single-sample")
    if element_value(dataset, "RescaleSlope") is not None:
        slope = optional_float(dataset, "RescaleSlope")
        if slope is None or slope == 0:
            raise fail(ErrorCode.DICOM_INVALID_VALUE, "RescaleSlope is zero or not a number")


def _check_transfer_syntax(transfer_syntax: str) -> None:
    uid = _syntax_uid(transfer_syntax)
    try:
        with library_warnings_guarded():  # get_decoder makes a UID of its own
            decoder = get_decoder(uid)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise fail(
            ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED,
            f"no installed decoder for transfer syntax {transfer_syntax} ({_uid_name(uid)})",
        )


def _uid_name(uid: UID) -> str:
    name = uid.name
    # pydicom echoes unknown UIDs as their own name; only registry names are worth printing.
    return name if name != str(uid) and uid.is_valid else "unknown transfer syntax"


def _check_photometric(header: ImageHeader) -> None:
    photometric, samples = header.photometric, header.samples_per_pixel
    if photometric is None:
        raise fail(ErrorCode.PHOTOMETRIC_UNSUPPORTED, "PhotometricInterpretation missing")
    if photometric in _MONOCHROME and samples == 1:
        return
    if photometric in _COLOUR and samples == 3:
        return
    if photometric in _J2K_COLOUR and samples == 3 and header.transfer_syntax_uid in _J2K_SYNTAXES:
        return
    known = photometric in _MONOCHROME | _COLOUR | _J2K_COLOUR | {"PALETTE COLOR"}
    label = photometric if known else "unrecognised value"
    raise fail(
        ErrorCode.PHOTOMETRIC_UNSUPPORTED,
        f"photometric interpretation {label} with {samples} samples per pixel unsupported",
    )


# ------------------------------------------------------------------------ step 4: pixel data


def expected_pixel_bytes(header: ImageHeader) -> int:
    """Bytes of native pixel data the header implies (YBR_FULL_422 is subsampled)."""
    pixels = header.width * header.height * header.frames
    bits = header.bits_allocated or 8
    if bits == 1:
        return math.ceil(pixels * header.samples_per_pixel / 8)
    samples = 2 if header.photometric == "YBR_FULL_422" else header.samples_per_pixel
    return pixels * samples * bits // 8


def load_pixels(data: bytes, header: ImageHeader) -> PixelSource:
    """Read the full dataset and check pixel data presence and length before decoding."""
    if header.format is not ImageFormat.DICOM:
        return PixelSource(header=header, data=data)
    dataset = read_dicom(data, header.raw_dicom, stop_before_pixels=False)
    if any(tag in dataset for tag in _FLOAT_PIXEL_TAGS):
        raise fail(ErrorCode.PIXEL_FORMAT_UNSUPPORTED, "float pixel data is not supported")
    if _PIXEL_DATA_TAG not in dataset:
        raise fail(ErrorCode.PIXEL_DATA_MISSING, "DICOM dataset has no PixelData element")
    pixel_bytes = element_value(dataset, "PixelData")
    if not isinstance(pixel_bytes, bytes) or not pixel_bytes:
        raise fail(ErrorCode.PIXEL_DATA_MISSING, "PixelData element is empty")
    if _syntax_uid(str(header.transfer_syntax_uid)).is_encapsulated:
        _check_codestreams(pixel_bytes, header)
    else:
        expected = expected_pixel_bytes(header)
        if len(pixel_bytes) < expected:
            raise fail(
                ErrorCode.PIXEL_DATA_TRUNCATED,
                f"PixelData has {len(pixel_bytes)} bytes; header implies {expected}",
            )
        if len(pixel_bytes) > expected + 1:
            raise fail(
                ErrorCode.DICOM_INVALID_VALUE,
                f"PixelData has {len(pixel_bytes)} bytes; header implies {expected} (+1 pad)",
            )
    return PixelSource(header=header, data=data, dataset=dataset)


def _check_codestreams(pixel_bytes: bytes, header: ImageHeader) -> None:
    """Compare each frame's codestream header with Rows/Columns before any decoder runs."""
    transfer_syntax = str(header.transfer_syntax_uid)
    count = 0
    try:
        for frame in generate_frames(pixel_bytes, number_of_frames=header.frames):
            count += 1
            if count > header.frames:
                break
            _check_codestream(frame, transfer_syntax, header)
    except RadstreamError:
        raise
    except Exception as exc:
        raise fail(ErrorCode.IMAGE_MALFORMED, "encapsulated pixel data is malformed") from exc
    if count < header.frames:
        raise fail(
            ErrorCode.PIXEL_DATA_TRUNCATED,
            f"encapsulated pixel data has {count} of {header.frames} frames",
        )


def _check_codestream(frame: bytes, transfer_syntax: str, header: ImageHeader) -> None:
    dimensions = _codestream_dimensions(frame, transfer_syntax)
    if dimensions is None:
        return
    width, height = dimensions
    if width * height > BOMB_PIXEL_THRESHOLD:
        raise fail(
            ErrorCode.IMAGE_DECOMPRESSION_BOMB, f"codestream declares {width}x{height} pixels"
        )
    if (width, height) != (header.width, header.height):
        raise fail(
            ErrorCode.DICOM_INVALID_VALUE,
            f"codestream is {width}x{height}; Rows/Columns say {header.width}x{header.height}",
        )


def _codestream_dimensions(frame: bytes, transfer_syntax: str) -> tuple[int, int] | None:
    if transfer_syntax in _J2K_SYNTAXES:
        return j2k_dimensions(frame)
    if transfer_syntax.startswith(_JPEG_FAMILY_PREFIX) and frame.startswith(b"\xff\xd8"):
        raster = jpeg_header(frame)
        return raster.width, raster.height
    return None


# --------------------------------------------------------------------- step 5: stored values


def check_stored_values(source: PixelSource) -> None:
    """Native DICOM: no stored value may use bits above BitsStored (sign extension allowed)."""
    header = source.header
    if header.format is not ImageFormat.DICOM or source.dataset is None:
        return
    allocated, stored = header.bits_allocated or 8, header.bits_stored or 8
    if _syntax_uid(str(header.transfer_syntax_uid)).is_encapsulated or allocated in (1, stored):
        return
    order = ">" if header.transfer_syntax_uid == RawDicomEncoding.EXPLICIT_BIG.value else "<"
    pixel_bytes = element_value(source.dataset, "PixelData")
    count = expected_pixel_bytes(header) // (allocated // 8)
    values = np.frombuffer(pixel_bytes, dtype=f"{order}u{allocated // 8}", count=count)
    upper = values >> stored
    extended = (1 << (allocated - stored)) - 1
    valid = upper == 0
    if header.signed:
        valid |= upper == extended
    if not bool(valid.all()):
        raise fail(
            ErrorCode.PIXEL_VALUES_OUT_OF_RANGE,
            f"stored values exceed the {stored}-bit range BitsStored allows",
        )


def check_decoded_values(header: ImageHeader, pixels: NDArray[Any]) -> None:
    """Compressed data: decoded values must fit the BitsStored range."""
    if header.format is not ImageFormat.DICOM or pixels.dtype.kind not in "iu":
        return
    stored = header.bits_stored or 8
    if header.signed:
        low, high = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
    else:
        low, high = 0, (1 << stored) - 1
    if pixels.size and (int(pixels.min()) < low or int(pixels.max()) > high):
        raise fail(
            ErrorCode.PIXEL_VALUES_OUT_OF_RANGE,
            f"decoded values exceed the {stored}-bit range BitsStored allows",
        )


# ---------------------------------------------------------------------------- step 6: decode


def decode_frames(source: PixelSource, *, first_frame_only: bool = False) -> NDArray[Any]:
    """Decode to shape (frames, rows, columns, samples); YBR and palette-free colour as RGB."""
    header = source.header
    frames = 1 if first_frame_only else header.frames
    if source.dataset is not None:
        pixels = _decode_dicom(source.dataset, first_frame_only=first_frame_only)
    else:
        pixels = _decode_raster(source.data, header)
    samples = 3 if header.samples_per_pixel == 3 else 1
    expected_shape = (frames, header.height, header.width, samples)
    if pixels.size != math.prod(expected_shape):
        raise fail(ErrorCode.IMAGE_MALFORMED, "decoded pixel count differs from the header")
    if pixels.dtype.name not in SUPPORTED_DTYPES:
        raise fail(
            ErrorCode.PIXEL_FORMAT_UNSUPPORTED, f"decoded dtype {pixels.dtype.name} unsupported"
        )
    # Native byte order: big-endian DICOM decodes to ">i2", which later stages need not see.
    return pixels.astype(pixels.dtype.newbyteorder("="), copy=False).reshape(expected_shape)


def _decode_dicom(dataset: Dataset, *, first_frame_only: bool) -> NDArray[Any]:
    try:
        with library_warnings_guarded():
            decoded: NDArray[Any] = pixel_array(
                dataset, index=0 if first_frame_only else None, raw=False
            )
    except RadstreamError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # Native plugins written in Rust (pylibjpeg-rle) raise pyo3's PanicException, a
        # BaseException, on corrupt codestreams: it must become a verdict, not a crash.
        raise fail(ErrorCode.IMAGE_MALFORMED, "pixel data could not be decoded") from exc
    return decoded


def _decode_raster(data: bytes, header: ImageHeader) -> NDArray[Any]:
    """Decode PNG/JPEG with Pillow restricted to the detected format and its bomb guard on."""
    fmt = "PNG" if header.format is ImageFormat.PNG else "JPEG"
    modes = _PNG_MODES if fmt == "PNG" else _JPEG_MODES
    try:
        with library_warnings_guarded(), Image.open(BytesIO(data), formats=[fmt]) as image:
            pixels = _load_image(image, header, modes)
    except RadstreamError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise fail(ErrorCode.IMAGE_DECOMPRESSION_BOMB, f"{fmt} exceeds Pillow's limit") from exc
    except Exception as exc:
        raise fail(ErrorCode.IMAGE_MALFORMED, f"{fmt} data is corrupt or truncated") from exc
    if pixels.dtype.name == "int32":  # Pillow's "I" mode for 16-bit greyscale
        pixels = pixels.astype(np.uint16)
    return pixels


def _load_image(
    image: Image.Image, header: ImageHeader, modes: dict[str, str | None]
) -> NDArray[Any]:
    """Check the opened image against the header, then decode and convert it."""
    if image.size != (header.width, header.height):
        raise fail(ErrorCode.IMAGE_MALFORMED, "decoder size differs from the header")
    if image.mode not in modes:
        raise fail(
            ErrorCode.PIXEL_FORMAT_UNSUPPORTED, f"{image.format} pixel mode is not supported"
        )
    image.load()
    target = modes[image.mode]
    converted = image.convert(target) if target and image.mode != target else image
    return np.asarray(converted)
