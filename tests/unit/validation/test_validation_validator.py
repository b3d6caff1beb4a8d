"""validate_image: each check accepts the good and names the bad with its stable code."""

from __future__ import annotations

import hashlib
import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from schemas.errors import ErrorCode
from schemas.events import ImageFormat
from schemas.settings import ValidationSettings
from streams.validation import (
    ValidationAccepted,
    ValidationOutcome,
    ValidationRejected,
    decoding,
    validate_image,
)
from tests.dicom_support import variant
from tests.unit.validation.support import (
    CT,
    DEFAULT_LIMITS,
    OPEN_RULES,
    PERMISSIVE_LIMITS,
    SAMPLES,
    dataset_bytes,
    edited_dicom,
    pydicom_file_bytes,
    with_transfer_syntax,
)

pytestmark = pytest.mark.requirement(
    "RS-VAL-01", "RS-VAL-02", "RS-VAL-03", "RS-VAL-04", "RS-VAL-05"
)


def _validate(
    data: bytes, limits: ValidationSettings = DEFAULT_LIMITS, **kwargs: object
) -> ValidationOutcome:
    return validate_image(data, limits=limits, rules=OPEN_RULES, **kwargs)  # type: ignore[arg-type]


def _code(data: bytes, limits: ValidationSettings = DEFAULT_LIMITS, **kwargs: object) -> ErrorCode:
    outcome = _validate(data, limits, **kwargs)
    assert isinstance(outcome, ValidationRejected), outcome
    return outcome.error_code


def _png(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class TestAcceptedOutcome:
    def test_ct_geometry(self) -> None:
        """The CT sample is accepted with its header geometry and modality LUT."""
        outcome = _validate(CT)
        assert isinstance(outcome, ValidationAccepted)
        geometry = outcome.geometry
        assert (geometry.format, geometry.width, geometry.height, geometry.frames) == (
            ImageFormat.DICOM,
            128,
            128,
            1,
        )
        assert (geometry.dtype, geometry.rescale_intercept) == ("int16", -1024.0)
        assert geometry.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
        assert geometry.transfer_syntax_uid == "1.2.840.10008.1.2.1"

    def test_sha256_and_size(self) -> None:
        """The outcome carries the SHA-256 and length of the bytes read."""
        outcome = _validate(CT)
        assert isinstance(outcome, ValidationAccepted)
        assert (outcome.sha256, outcome.size_bytes) == (hashlib.sha256(CT).hexdigest(), len(CT))

    def test_uids_and_modality_from_header(self) -> None:
        """Study/series/SOP UIDs and modality come from the header."""
        dataset = dcmread(BytesIO(CT))
        outcome = _validate(CT)
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.study_instance_uid == dataset.StudyInstanceUID
        assert outcome.sop_instance_uid == dataset.SOPInstanceUID
        assert outcome.modality == "CT"

    def test_study_uid_of_another_study_is_rejected(self) -> None:
        """An event naming another study than its file's header is a stable rejection."""
        outcome = _validate(CT, declared_study_instance_uid="1.2.3.4")
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is ErrorCode.IMAGE_STUDY_UID_MISMATCH
        assert "1.2.3.4" not in outcome.reason

    def test_matching_or_absent_study_uid_is_accepted(self) -> None:
        """The file's own study UID, or none declared, passes."""
        own = dcmread(BytesIO(CT)).StudyInstanceUID
        assert isinstance(_validate(CT, declared_study_instance_uid=own), ValidationAccepted)
        assert isinstance(_validate(CT, declared_study_instance_uid=None), ValidationAccepted)

    def test_declared_study_uid_is_not_checked_without_a_header(self) -> None:
        """A PNG has no StudyInstanceUID to contradict the event: the router's stands."""
        png = _png(Image.new("L", (128, 128), 7))
        outcome = _validate(png, declared_study_instance_uid="1.2.3.4")
        assert isinstance(outcome, ValidationAccepted)

    def test_verdicts_name_every_check(self) -> None:
        """Every check leaves a passed verdict, in order."""
        outcome = _validate(CT)
        names = [verdict.check for verdict in outcome.verdicts]
        assert names[:9] == [
            "size",
            "checksum",
            "header",
            "geometry",
            "pixel_format",
            "pixel_data",
            "stored_values",
            "decode",
            "decoded_values",
        ]
        assert all(verdict.passed for verdict in outcome.verdicts)

    def test_ybr_reported_as_rgb(self) -> None:
        """YBR data is converted by the shared decoder, so the geometry says RGB."""
        outcome = _validate((SAMPLES / "dicom" / "ot_rgb_jpeg_ybr.dcm").read_bytes())
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.geometry.photometric_interpretation == "RGB"
        assert outcome.geometry.samples_per_pixel == 3

    def test_png_uses_event_modality_hint(self) -> None:
        """PNG has no header modality; the event's hint is used."""
        data = (SAMPLES / "raster" / "ct_256.png").read_bytes()
        outcome = _validate(data, event_modality="CT")
        assert isinstance(outcome, ValidationAccepted)
        assert (outcome.modality, outcome.study_instance_uid) == ("CT", None)

    def test_png_ignores_malformed_hint(self) -> None:
        """A hint that is not a modality code is dropped rather than echoed."""
        outcome = _validate((SAMPLES / "raster" / "ct_256.png").read_bytes(), event_modality="x y")
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.modality is None

    def test_png_ignores_a_code_shaped_name_as_hint(self) -> None:
        """A hint in code-string shape that is no defined term (a name) is dropped too."""
        png = (SAMPLES / "raster" / "ct_256.png").read_bytes()
        outcome = _validate(png, event_modality="DOEJANE")
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.modality is None

    def test_header_modality_that_is_no_defined_term_is_dropped(self) -> None:
        """A name written into the header's Modality never becomes the image's modality."""
        outcome = _validate(variant(Modality="DOEJANE"))
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.modality is None

    def test_header_body_part_that_is_no_defined_term_is_dropped(self) -> None:
        """A name in the header's BodyPartExamined is in neither the geometry nor the outcome."""
        outcome = _validate(variant(BodyPartExamined="CANARYDOE"))
        assert isinstance(outcome, ValidationAccepted)
        assert (outcome.body_part, outcome.geometry.body_part) == (None, None)
        assert "CANARYDOE" not in outcome.model_dump_json()

    @pytest.mark.parametrize("written", ["CHEST", "chest"])
    def test_header_body_part_that_is_a_defined_term_is_kept(self, written: str) -> None:
        """A defined term is carried in upper case, in the geometry and the outcome."""
        outcome = _validate(variant(BodyPartExamined=written))
        assert isinstance(outcome, ValidationAccepted)
        assert (outcome.body_part, outcome.geometry.body_part) == ("CHEST", "CHEST")

    def test_png_16_bit(self) -> None:
        """A 16-bit greyscale PNG decodes to uint16."""
        outcome = _validate((SAMPLES / "raster" / "ct_128_16bit.png").read_bytes())
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.geometry.dtype == "uint16"

    @pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "1"])
    def test_png_modes_converted(self, mode: str) -> None:
        """Alpha, palette and bilevel PNGs are converted to greyscale or RGB."""
        image = Image.new("RGB", (64, 64), (10, 20, 30)).convert(mode)
        outcome = _validate(_png(image))
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.geometry.samples_per_pixel in (1, 3)

    def test_serialises_to_json(self) -> None:
        """The accepted outcome round-trips through JSON (it is published as an event)."""
        outcome = _validate(CT)
        assert ValidationAccepted.model_validate_json(outcome.model_dump_json()) == outcome

    def test_raw_dicom_when_allowed(self) -> None:
        """A dataset without preamble is accepted when raw DICOM is allowed."""
        raw = (SAMPLES / "bad" / "raw_no_preamble.dcm").read_bytes()
        limits = ValidationSettings(allow_raw_dicom=True)
        outcome = _validate(raw, limits)
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.geometry.width == 128


class TestSizeAndChecksum:
    def test_empty(self) -> None:
        """Zero bytes is IMAGE_EMPTY."""
        assert _code(b"") is ErrorCode.IMAGE_EMPTY

    def test_too_large(self) -> None:
        """More bytes than the limit is IMAGE_TOO_LARGE."""
        assert _code(CT, ValidationSettings(max_file_bytes=1000)) is ErrorCode.IMAGE_TOO_LARGE

    def test_declared_size_mismatch(self) -> None:
        """A declared size other than the bytes read is IMAGE_SIZE_MISMATCH."""
        assert _code(CT, declared_size=len(CT) + 1) is ErrorCode.IMAGE_SIZE_MISMATCH

    def test_declared_size_match(self) -> None:
        """The right declared size passes."""
        assert isinstance(_validate(CT, declared_size=len(CT)), ValidationAccepted)

    def test_checksum_mismatch(self) -> None:
        """A wrong declared sha256 is CHECKSUM_MISMATCH."""
        assert _code(CT, declared_sha256="0" * 64) is ErrorCode.CHECKSUM_MISMATCH

    def test_checksum_match_any_case(self) -> None:
        """The right sha256 passes, in upper case too."""
        digest = hashlib.sha256(CT).hexdigest().upper()
        assert isinstance(_validate(CT, declared_sha256=digest), ValidationAccepted)

    def test_failed_verdict_recorded(self) -> None:
        """The failing check is the last verdict, marked failed, with the code in its detail."""
        outcome = _validate(CT, declared_sha256="0" * 64)
        assert isinstance(outcome, ValidationRejected)
        last = outcome.verdicts[-1]
        assert (last.check, last.passed) == ("checksum", False)
        assert last.detail.startswith("CHECKSUM_MISMATCH")


class TestGeometry:
    def test_huge_rows_columns(self) -> None:
        """Rows/Columns 65535 in native DICOM is IMAGE_DIMENSIONS_OUT_OF_RANGE."""
        data = (SAMPLES / "bad" / "huge_rows_columns.dcm").read_bytes()
        assert _code(data) is ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE

    def test_too_small(self) -> None:
        """A 16x16 CR image is below the default 64 px minimum."""
        assert _code(pydicom_file_bytes("6154")) is ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE

    def test_multiframe_policy(self) -> None:
        """More frames than max_frames is MULTIFRAME_NOT_ALLOWED."""
        limits = ValidationSettings(min_dimension=1)
        assert _code(pydicom_file_bytes("rtdose.dcm"), limits) is ErrorCode.MULTIFRAME_NOT_ALLOWED

    def test_multiframe_allowed(self) -> None:
        """Within the policy a multi-frame image is accepted with its frame count."""
        outcome = _validate(pydicom_file_bytes("rtdose.dcm"), PERMISSIVE_LIMITS)
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.geometry.frames == 15

    def test_deflate_bomb(self) -> None:
        """A deflated dataset inflating past the bound is IMAGE_DECOMPRESSION_BOMB."""
        data = (SAMPLES / "bad" / "deflate_bomb.dcm").read_bytes()
        assert _code(data) is ErrorCode.IMAGE_DECOMPRESSION_BOMB

    def test_deflate_corrupt(self) -> None:
        """A deflated dataset that is not valid deflate data is IMAGE_MALFORMED."""
        data = (SAMPLES / "bad" / "deflate_bomb.dcm").read_bytes()[:400] + b"\xff" * 64
        assert _code(data) is ErrorCode.IMAGE_MALFORMED

    def test_deflated_accepted(self) -> None:
        """A normal deflated file is inflated and accepted."""
        outcome = _validate(pydicom_file_bytes("image_dfl.dcm"))
        assert isinstance(outcome, ValidationAccepted)


class TestDicomStructure:
    def test_missing_transfer_syntax(self) -> None:
        """No TransferSyntaxUID in the meta group is DICOM_TRANSFER_SYNTAX_MISSING."""
        data = pydicom_file_bytes("meta_missing_tsyntax.dcm")
        assert _code(data, PERMISSIVE_LIMITS) is ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING

    def test_unsupported_transfer_syntax_named(self) -> None:
        """A transfer syntax without decoder is refused with its UID and name in the reason."""
        data = with_transfer_syntax(CT, "1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile
        outcome = _validate(data)
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED
        assert "1.2.840.10008.1.2.4.100" in outcome.reason
        assert "MPEG2" in outcome.reason

    def test_invalid_transfer_syntax_uid(self) -> None:
        """A TransferSyntaxUID that is not a UID is DICOM_INVALID_VALUE."""
        assert _code(with_transfer_syntax(CT, "not-a-uid")) is ErrorCode.DICOM_INVALID_VALUE

    def test_unknown_transfer_syntax_not_named(self) -> None:
        """An unregistered UID is quoted but not given a made-up name."""
        outcome = _validate(with_transfer_syntax(CT, "1.2.3.4"))
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED
        assert "unknown transfer syntax" in outcome.reason

    def test_no_pixel_module(self) -> None:
        """A structured report is PIXEL_DATA_MISSING."""
        assert _code((SAMPLES / "bad" / "sr_no_pixels.dcm").read_bytes()) is (
            ErrorCode.PIXEL_DATA_MISSING
        )

    def test_pixel_data_element_missing(self) -> None:
        """Rows/Columns without a PixelData element is PIXEL_DATA_MISSING."""
        assert _code(edited_dicom("CT_small.dcm", PixelData=None)) is ErrorCode.PIXEL_DATA_MISSING

    def test_truncated(self) -> None:
        """Pixel data shorter than the header implies is PIXEL_DATA_TRUNCATED."""
        data = (SAMPLES / "bad" / "truncated_ct.dcm").read_bytes()
        assert _code(data) is ErrorCode.PIXEL_DATA_TRUNCATED

    def test_one_pad_byte_allowed(self) -> None:
        """One extra byte of pixel data (odd-length padding) is accepted."""
        dataset = dcmread(str(get_testdata_file("SC_rgb_small_odd.dcm")))
        outcome = _validate(dataset_bytes(dataset), PERMISSIVE_LIMITS)
        assert isinstance(outcome, ValidationAccepted)

    def test_garbage_meta_has_no_transfer_syntax(self) -> None:
        """DICM followed by garbage has no TransferSyntaxUID."""
        assert _code(b"\x00" * 128 + b"DICM" + b"\xff" * 64) is (
            ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING
        )

    def test_unparseable_meta(self) -> None:
        """A meta group with an unknown VR is IMAGE_MALFORMED."""
        meta = b"\x02\x00\x00\x00UL\x04\x00\x10\x00\x00\x00\x02\x00\x10\x00XX\x04\x00abcd"
        assert _code(b"\x00" * 128 + b"DICM" + meta) is ErrorCode.IMAGE_MALFORMED

    def test_unparseable_dataset(self) -> None:
        """A valid meta group followed by a broken dataset is IMAGE_MALFORMED."""
        meta_end = 144 + struct.unpack_from("<I", CT, 140)[0]
        broken = CT[:meta_end] + b"\x08\x00\x05\x00XX\x04\x00abcd" + b"\x00" * 64
        assert _code(broken) is ErrorCode.IMAGE_MALFORMED

    def test_rows_missing(self) -> None:
        """Columns without Rows is DICOM_INVALID_VALUE."""
        assert _code(edited_dicom("CT_small.dcm", Rows=None)) is ErrorCode.DICOM_INVALID_VALUE

    def test_zero_rows(self) -> None:
        """Rows of zero is DICOM_INVALID_VALUE."""
        assert _code(edited_dicom("CT_small.dcm", Rows=0)) is ErrorCode.DICOM_INVALID_VALUE

    def test_bad_number_of_frames(self) -> None:
        """NumberOfFrames "1A" is DICOM_INVALID_VALUE."""
        assert _code(pydicom_file_bytes("badVR.dcm"), PERMISSIVE_LIMITS) is (
            ErrorCode.DICOM_INVALID_VALUE
        )

    def test_codestream_disagrees_with_rows(self) -> None:
        """A JPEG frame whose SOF differs from Rows/Columns is DICOM_INVALID_VALUE."""
        data = edited_dicom("SC_rgb_jpeg_dcmtk.dcm", Rows=64, Columns=64)
        assert _code(data) is ErrorCode.DICOM_INVALID_VALUE

    def test_encapsulated_frames_missing(self) -> None:
        """Fewer encapsulated frames than NumberOfFrames is PIXEL_DATA_TRUNCATED."""
        data = edited_dicom("SC_rgb_rle_2frame.dcm", NumberOfFrames=3)
        assert _code(data, PERMISSIVE_LIMITS) is ErrorCode.PIXEL_DATA_TRUNCATED

    def test_undecodable_codestream(self) -> None:
        """A JPEG frame that the plugins cannot decode is IMAGE_MALFORMED."""
        assert _code(pydicom_file_bytes("JPEG-lossy.dcm"), PERMISSIVE_LIMITS) is (
            ErrorCode.IMAGE_MALFORMED
        )

    def test_excess_pixel_data(self) -> None:
        """Pixel data longer than the header implies (beyond one pad byte) is refused."""
        assert _code(pydicom_file_bytes("MR_small_padded.dcm")) is ErrorCode.DICOM_INVALID_VALUE


class TestPixelFormat:
    @pytest.mark.parametrize(
        ("attributes", "code"),
        [
            ({"BitsAllocated": 12}, ErrorCode.PIXEL_FORMAT_UNSUPPORTED),
            ({"BitsStored": 17}, ErrorCode.PIXEL_FORMAT_UNSUPPORTED),
            ({"BitsStored": None}, ErrorCode.PIXEL_FORMAT_UNSUPPORTED),
            ({"HighBit": 11}, ErrorCode.PIXEL_FORMAT_UNSUPPORTED),
            ({"PixelRepresentation": 2}, ErrorCode.PIXEL_FORMAT_UNSUPPORTED),
            ({"PhotometricInterpretation": "PALETTE COLOR"}, ErrorCode.PHOTOMETRIC_UNSUPPORTED),
            ({"PhotometricInterpretation": "RGB"}, ErrorCode.PHOTOMETRIC_UNSUPPORTED),
            ({"PhotometricInterpretation": "YBR_RCT"}, ErrorCode.PHOTOMETRIC_UNSUPPORTED),
            ({"PhotometricInterpretation": "HSV"}, ErrorCode.PHOTOMETRIC_UNSUPPORTED),
            ({"PhotometricInterpretation": None}, ErrorCode.PHOTOMETRIC_UNSUPPORTED),
            ({"RescaleSlope": 0}, ErrorCode.DICOM_INVALID_VALUE),
        ],
        ids=str,
    )
    def test_header_refusals(self, attributes: dict[str, object], code: ErrorCode) -> None:
        """Inconsistent or unsupported pixel attributes are refused with their code."""
        assert _code(edited_dicom("CT_small.dcm", **attributes)) is code

    def test_one_bit_colour(self) -> None:
        """1-bit samples must be single-sample."""
        data = edited_dicom("SC_rgb_small_odd.dcm", BitsAllocated=1, BitsStored=1, HighBit=0)
        assert _code(data, PERMISSIVE_LIMITS) is ErrorCode.PIXEL_FORMAT_UNSUPPORTED

    def test_unknown_photometric_not_echoed(self) -> None:
        """An unrecognised photometric value is not copied into the reason."""
        outcome = _validate(edited_dicom("CT_small.dcm", PhotometricInterpretation="SMITH"))
        assert isinstance(outcome, ValidationRejected)
        assert "SMITH" not in outcome.reason

    def test_float_pixel_data(self) -> None:
        """Float pixel data is refused as PIXEL_FORMAT_UNSUPPORTED."""
        dataset = dcmread(str(get_testdata_file("CT_small.dcm")))
        dataset.FloatPixelData = np.zeros(128 * 128, dtype=np.float32).tobytes()
        del dataset.PixelData
        assert _code(dataset_bytes(dataset)) is ErrorCode.PIXEL_FORMAT_UNSUPPORTED

    def test_jpeg_12_bit_refused(self) -> None:
        """A 12-bit JPEG file is refused (Pillow decodes 8-bit JPEG only)."""
        data = bytearray((SAMPLES / "raster" / "ct_64.jpg").read_bytes())
        index = data.find(b"\xff\xc0")
        data[index + 4] = 12
        assert _code(bytes(data)) is ErrorCode.PIXEL_FORMAT_UNSUPPORTED


class TestValues:
    def test_native_values_beyond_bits_stored(self) -> None:
        """Native values using bits above BitsStored are PIXEL_VALUES_OUT_OF_RANGE."""
        data = edited_dicom("CT_small.dcm", BitsStored=11, HighBit=10)
        assert _code(data) is ErrorCode.PIXEL_VALUES_OUT_OF_RANGE

    def test_sign_extended_values_pass(self) -> None:
        """Sign-extended negatives within BitsStored are in range."""
        dataset = dcmread(str(get_testdata_file("CT_small.dcm")))
        values = np.full((128, 128), -5, dtype=np.int16)
        dataset.PixelData = values.tobytes()
        dataset.BitsStored, dataset.HighBit = 12, 11
        assert isinstance(_validate(dataset_bytes(dataset)), ValidationAccepted)

    def test_decoded_values_beyond_bits_stored(self) -> None:
        """Decoded (JPEG 2000) values above the BitsStored range are PIXEL_VALUES_OUT_OF_RANGE."""
        data = edited_dicom("MR_small_jp2klossless.dcm", BitsStored=11, HighBit=10)
        assert _code(data) is ErrorCode.PIXEL_VALUES_OUT_OF_RANGE


class TestRaster:
    def test_png_bomb(self) -> None:
        """A PNG whose IHDR claims 65535x65535 is IMAGE_DECOMPRESSION_BOMB."""
        data = (SAMPLES / "bad" / "png_bomb_65535.png").read_bytes()
        assert _code(data) is ErrorCode.IMAGE_DECOMPRESSION_BOMB

    def test_png_too_wide_not_bomb(self) -> None:
        """A modestly oversized PNG is IMAGE_DIMENSIONS_OUT_OF_RANGE."""
        data = _png(Image.new("L", (4096, 64)))
        assert _code(data) is ErrorCode.IMAGE_DIMENSIONS_OUT_OF_RANGE

    def test_pillow_guard_still_on(self) -> None:
        """If our threshold let a bomb through, Pillow's own guard maps to the same code."""
        header = decoding.ImageHeader(
            format=ImageFormat.PNG,
            width=65535,
            height=65535,
            frames=1,
            samples_per_pixel=1,
            bits_allocated=8,
            bits_stored=8,
            signed=False,
            photometric="MONOCHROME2",
            transfer_syntax_uid=None,
            compressed=True,
        )
        data = (SAMPLES / "bad" / "png_bomb_65535.png").read_bytes()
        with pytest.raises(decoding.RadstreamError) as caught:
            decoding.decode_frames(decoding.PixelSource(header=header, data=data))
        assert caught.value.code is ErrorCode.IMAGE_DECOMPRESSION_BOMB

    def test_truncated_png(self) -> None:
        """A PNG cut short is IMAGE_MALFORMED."""
        data = (SAMPLES / "raster" / "ct_512.png").read_bytes()
        assert _code(data[: len(data) // 2]) is ErrorCode.IMAGE_MALFORMED

    def test_png_crc_checked_header(self) -> None:
        """A PNG whose IHDR CRC is wrong is IMAGE_MALFORMED."""
        data = bytearray((SAMPLES / "raster" / "ct_64.png").read_bytes())
        data[29] ^= 0xFF
        assert _code(bytes(data)) is ErrorCode.IMAGE_MALFORMED

    def test_png_idat_garbage(self) -> None:
        """A PNG with undecodable IDAT data is IMAGE_MALFORMED."""
        ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)

        def chunk(kind: bytes, payload: bytes) -> bytes:
            crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
            return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

        data = (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", b"junk")
            + chunk(b"IEND", b"")
        )
        assert _code(data) is ErrorCode.IMAGE_MALFORMED

    def test_jpeg_cmyk_converted(self) -> None:
        """A CMYK JPEG is converted to RGB."""
        buffer = BytesIO()
        Image.new("CMYK", (64, 64), (0, 50, 100, 0)).save(buffer, format="JPEG")
        outcome = _validate(buffer.getvalue())
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.geometry.samples_per_pixel == 3


def _validate_ct_with_geometry_raising(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> ValidationRejected:
    """Validate the CT sample while the geometry check raises ``error``; it must be rejected."""

    def failing_step(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr("streams.validation.validator.check_geometry", failing_step)
    outcome = _validate(CT)
    assert isinstance(outcome, ValidationRejected)
    return outcome


class TestNeverRaises:
    def test_unexpected_exception_becomes_malformed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unexpected library exception becomes IMAGE_MALFORMED with a fixed reason."""
        outcome = _validate_ct_with_geometry_raising(
            monkeypatch, RuntimeError("CompressedSamples^CT1")
        )
        assert outcome.error_code is ErrorCode.IMAGE_MALFORMED
        assert "CompressedSamples" not in outcome.reason


class _PanicException(BaseException):
    """Stands in for pyo3's PanicException, which derives from BaseException."""


class TestNativePluginPanics:
    def test_rust_panic_becomes_verdict(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A decoder plugin panicking with a BaseException gives IMAGE_MALFORMED, not a crash.

        Fuzzing found pylibjpeg-rle panicking on one flipped bit (offset 5824 of the RLE
        sample); ``except Exception`` missed it. A fake decoder reproduces the exception class
        so the test does not depend on which RLE plugin is installed.
        """

        def panicking_decoder(*_args: object, **_kwargs: object) -> None:
            raise _PanicException("index out of bounds")

        monkeypatch.setattr(decoding, "pixel_array", panicking_decoder)
        outcome = _validate((SAMPLES / "dicom" / "mr_small_rle.dcm").read_bytes())
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code is ErrorCode.IMAGE_MALFORMED
        assert outcome.verdicts[-1].check == "decode"

    def test_panic_outside_decoder_still_a_verdict(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A BaseException from any other step is caught at the top level too."""
        outcome = _validate_ct_with_geometry_raising(monkeypatch, _PanicException("boom"))
        assert outcome.error_code is ErrorCode.IMAGE_MALFORMED
