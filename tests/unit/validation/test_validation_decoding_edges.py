"""The decoder's defensive paths: each one a stable verdict, never a crash, never swallowed Ctrl-C.

These inputs are rare (a value pydicom cannot convert, a decoder that disagrees with the header,
a codec library that raises something unexpected), so the corpus does not reach all of them;
each test builds the one situation directly.
"""

from __future__ import annotations

import dataclasses
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from schemas.errors import ErrorCode, RadstreamError
from streams.validation import decoding
from tests.unit.validation.support import CT, SAMPLES, dataset_bytes, pydicom_file_bytes

pytestmark = pytest.mark.requirement("RS-VAL-04")

PNG = (SAMPLES / "raster" / "ct_64.png").read_bytes()


def _raw_element(keyword_tag: int, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(keyword_tag), vr, len(value), value, 0, False, True)


def _with_raw(tag: int, vr: str, value: bytes) -> Dataset:
    """A dataset holding one element whose raw bytes pydicom converts only on access."""
    dataset = Dataset()
    dataset[tag] = _raw_element(tag, vr, value)  # type: ignore[assignment]
    return dataset


def _code(caught: pytest.ExceptionInfo[RadstreamError]) -> ErrorCode:
    return caught.value.code


class TestElementValues:
    def test_unconvertible_value_is_a_verdict(self) -> None:
        """A value pydicom cannot convert (text in a US element) is DICOM_INVALID_VALUE."""
        dataset = _with_raw(0x00280010, "US", b"\x01")  # Rows: one byte for a 2-byte VR
        with pytest.raises(RadstreamError) as caught:
            decoding.element_value(dataset, "Rows")
        assert _code(caught) is ErrorCode.DICOM_INVALID_VALUE
        assert "Rows" in caught.value.reason

    @pytest.mark.parametrize("value", [b"\x00\x01", [1, 2], (3,)])
    def test_bytes_and_multiple_values_are_not_integers(self, value: Any) -> None:
        """Bytes and multi-valued elements never pass for an integer."""
        assert decoding._as_int(value) is None

    def test_optional_float_of_an_unconvertible_element_is_none(self) -> None:
        """A broken optional number is treated as absent, not as a crash."""
        dataset = _with_raw(0x00280010, "US", b"\x01")
        assert decoding.optional_float(dataset, "Rows") is None

    def test_optional_float_of_text_is_none(self) -> None:
        """A value float() refuses is treated as absent."""
        dataset = Dataset()
        dataset.add_new(0x00181050, "LO", "fine")  # a text value under a number's keyword
        assert decoding.optional_float(dataset, "SpatialResolution") is None


class TestPixelFormat:
    def test_dicom_header_without_dataset(self) -> None:
        """A DICOM header built without its dataset is refused as malformed."""
        header = dataclasses.replace(decoding.read_header(CT), dataset=None)
        with pytest.raises(RadstreamError) as caught:
            decoding.check_pixel_format(header)
        assert _code(caught) is ErrorCode.IMAGE_MALFORMED

    def test_empty_pixel_data(self) -> None:
        """A PixelData element of zero length is PIXEL_DATA_MISSING."""
        dataset = dcmread(BytesIO(CT))
        dataset.PixelData = b""
        data = dataset_bytes(dataset)
        with pytest.raises(RadstreamError) as caught:
            decoding.load_pixels(data, decoding.read_header(data))
        assert _code(caught) is ErrorCode.PIXEL_DATA_MISSING


class TestCodestreams:
    RLE = "SC_rgb_rle_2frame.dcm"

    def test_more_fragments_than_frames_stop_at_the_declared_count(self) -> None:
        """Extra fragments after the declared frames are not examined (the header decides)."""
        data = pydicom_file_bytes(self.RLE)
        header = dataclasses.replace(decoding.read_header(data), frames=1)
        pixel_bytes = dcmread(BytesIO(data)).PixelData
        decoding._check_codestreams(pixel_bytes, header)

    def test_unparseable_encapsulation_is_malformed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Whatever the fragment parser raises becomes IMAGE_MALFORMED."""

        def broken(*_args: object, **_kwargs: object) -> Any:
            raise ValueError("bad item tag")
            yield b""  # pragma: no cover - makes this a generator

        monkeypatch.setattr(decoding, "generate_frames", broken)
        data = pydicom_file_bytes(self.RLE)
        with pytest.raises(RadstreamError) as caught:
            decoding._check_codestreams(b"\x00", decoding.read_header(data))
        assert _code(caught) is ErrorCode.IMAGE_MALFORMED


class TestDecode:
    def _source(self) -> decoding.PixelSource:
        return decoding.load_pixels(CT, decoding.read_header(CT))

    def test_decoder_output_of_the_wrong_size(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A decoder that returns fewer pixels than the header declares is refused."""
        monkeypatch.setattr(decoding, "pixel_array", lambda *_a, **_k: np.zeros((2, 2), "u2"))
        with pytest.raises(RadstreamError) as caught:
            decoding.decode_frames(self._source())
        assert _code(caught) is ErrorCode.IMAGE_MALFORMED

    def test_decoder_output_of_an_unsupported_dtype(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Complex or other unexpected dtypes from a decoder are refused by name."""
        monkeypatch.setattr(
            decoding, "pixel_array", lambda *_a, **_k: np.zeros((128, 128), np.complex64)
        )
        with pytest.raises(RadstreamError) as caught:
            decoding.decode_frames(self._source())
        assert _code(caught) is ErrorCode.PIXEL_FORMAT_UNSUPPORTED
        assert "complex64" in caught.value.reason

    def test_a_verdict_from_inside_the_decoder_is_kept(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A RadstreamError raised while decoding keeps its own code."""

        def refuse(*_a: object, **_k: object) -> Any:
            raise decoding.fail(ErrorCode.IMAGE_DECOMPRESSION_BOMB, "too large")

        monkeypatch.setattr(decoding, "pixel_array", refuse)
        with pytest.raises(RadstreamError) as caught:
            decoding.decode_frames(self._source())
        assert _code(caught) is ErrorCode.IMAGE_DECOMPRESSION_BOMB

    @pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
    def test_interrupts_are_not_turned_into_verdicts(
        self, monkeypatch: pytest.MonkeyPatch, signal: type[BaseException]
    ) -> None:
        """Ctrl-C or an exit during a decode stops the process; it is not a malformed image."""

        def interrupted(*_a: object, **_k: object) -> Any:
            raise signal

        monkeypatch.setattr(decoding, "pixel_array", interrupted)
        with pytest.raises(signal):
            decoding.decode_frames(self._source())

    def test_a_verdict_from_inside_the_raster_decoder_is_kept(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Checks inside the Pillow path keep their own code."""
        header = dataclasses.replace(decoding.read_header(PNG), width=65)
        with pytest.raises(RadstreamError) as caught:
            decoding.decode_frames(decoding.load_pixels(PNG, header))
        assert _code(caught) is ErrorCode.IMAGE_MALFORMED
        assert "size differs" in caught.value.reason

    def test_pillow_int32_greyscale_becomes_uint16(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Pillow's 32-bit 'I' mode (16-bit greyscale in some versions) comes back as uint16."""
        monkeypatch.setattr(decoding, "_load_image", lambda *_a: np.full((64, 64), 40000, np.int32))
        pixels = decoding.decode_frames(decoding.load_pixels(PNG, decoding.read_header(PNG)))
        assert pixels.dtype == np.uint16
        assert int(pixels.max()) == 40000

    def test_a_pillow_mode_outside_the_table_is_refused(self) -> None:
        """A mode the table does not list (a future Pillow's) is refused by name, not guessed."""
        header = decoding.read_header(PNG)
        with Image.open(BytesIO(PNG)) as image, pytest.raises(RadstreamError) as caught:
            decoding._load_image(image, header, {})
        assert _code(caught) is ErrorCode.PIXEL_FORMAT_UNSUPPORTED
        assert "pixel mode" in caught.value.reason
