"""Rare inputs of the header parsers, the file reader, the clinical checks and the validator.

Each is a situation a hostile or broken sender can create (an element pydicom cannot convert, a
JPEG that never reaches its frame header, a file that grows while it is read) and each must end
in a stable verdict or a clean "unknown", never in an exception the stage did not expect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from schemas.errors import ErrorCode, RadstreamError
from streams.validation import clinical, formats, storage, validator
from streams.validation.validator import ValidationRejected, validate_image
from tests.unit.validation.support import OPEN_RULES, PERMISSIVE_LIMITS, edited_dicom

pytestmark = pytest.mark.requirement("RS-VAL-01")


def unconvertible(*keywords_and_tags: tuple[str, int]) -> Dataset:
    """A dataset whose named elements hold one byte under a 2-byte VR: reading them fails."""
    dataset = Dataset()
    for _keyword, tag in keywords_and_tags:
        dataset[tag] = RawDataElement(Tag(tag), "US", 1, b"\x01", 0, False, True)  # type: ignore[assignment]
    return dataset


class TestJpegHeader:
    def test_a_walk_of_only_standalone_markers_is_bounded(self) -> None:
        """Thousands of length-less markers end the walk at its bound, as malformed."""
        data = b"\xff\xd8" + b"\xff\x01" * (formats._MAX_JPEG_SEGMENTS + 2)
        with pytest.raises(RadstreamError) as caught:
            formats.jpeg_header(data)
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED

    @pytest.mark.parametrize(
        "segment",
        [b"\xff\xc0\x00\x05\x08\x00", b"\xff\xc0\x00\x11\x08\x00"],
        ids=["length-below-8", "truncated-frame-header"],
    )
    def test_a_frame_header_too_short_to_read(self, segment: bytes) -> None:
        """A start-of-frame segment too short to hold its fields is malformed."""
        with pytest.raises(RadstreamError) as caught:
            formats.jpeg_header(b"\xff\xd8" + segment)
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED


class TestReadImageBytes:
    def test_an_error_while_reading_is_storage_read_failed(self) -> None:
        """An I/O error after the open (EIO, as from a failing disk) is STORAGE_READ_FAILED.

        Reading a process's own memory file at offset 0 fails with EIO on Linux: a real read
        error on a regular file, without patching the operating system calls.
        """
        with pytest.raises(RadstreamError) as caught:
            storage.read_image_bytes(Path(f"/proc/{os.getpid()}/mem"), max_bytes=100)
        assert caught.value.code is ErrorCode.STORAGE_READ_FAILED

    def test_a_file_that_grows_past_the_limit_while_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The size seen by stat is not trusted: more bytes than the limit read is too large."""
        path = tmp_path / "image.dcm"
        path.write_bytes(b"x" * 50)
        real_fstat = os.fstat

        def small_at_stat_time(fd: int) -> os.stat_result:
            info = list(real_fstat(fd))
            info[6] = 5  # st_size as it was when the router had written only 5 bytes
            return os.stat_result(info)

        monkeypatch.setattr(storage.os, "fstat", small_at_stat_time)
        with pytest.raises(RadstreamError) as caught:
            storage.read_image_bytes(path, max_bytes=10)
        assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE


class TestClinicalAttributes:
    def test_an_unreadable_required_attribute_counts_as_absent(self) -> None:
        """A required attribute pydicom cannot read is as good as missing."""
        assert clinical._absent(unconvertible(("BodyPartExamined", 0x00180015)), "BodyPartExamined")

    def test_unreadable_pixel_spacing_is_unknown(self) -> None:
        """PixelSpacing that cannot be read gives no spacing, not an error."""
        assert clinical.pixel_spacing(unconvertible(("PixelSpacing", 0x00280030))) is None

    @pytest.mark.parametrize("value", ["abc\\1.0", "0.5"], ids=["not-a-number", "one-value"])
    def test_pixel_spacing_that_is_not_two_numbers_is_unknown(self, value: str) -> None:
        """A spacing that is not a (row, column) pair of numbers gives no spacing."""
        dataset = Dataset()
        dataset.add_new(0x00280030, "LO", value)  # stored as text: pydicom does not convert it
        assert clinical.pixel_spacing(dataset) is None

    def test_unreadable_age_is_unknown(self) -> None:
        """A PatientAge that cannot be read leaves the age unknown."""
        assert clinical._patient_age_years(unconvertible(("PatientAge", 0x00101010))) is None

    @pytest.mark.parametrize("value", ["20231340", "20230230"])
    def test_impossible_dates_are_unknown(self, value: str) -> None:
        """Dates in the right shape but not in the calendar are unknown."""
        assert clinical._parse_date(value) is None


class TestValidatorValues:
    def test_an_unreadable_code_string_is_left_out(self) -> None:
        """A Modality or body part that cannot be read is reported as unknown."""
        dataset = unconvertible(("Modality", 0x00080060))
        assert validator._dicom_code(dataset, "Modality") is None

    def test_an_unreadable_uid_is_left_out(self) -> None:
        """A UID that cannot be read is not reported."""
        dataset = unconvertible(("StudyInstanceUID", 0x0020000D))
        assert validator._uid(dataset, "StudyInstanceUID") is None

    def test_missing_bits_allocated_is_a_verdict_with_a_plain_detail(self) -> None:
        """Without BitsAllocated the pixel-format check fails and its detail omits the bits."""
        data = edited_dicom("MR_small.dcm", BitsAllocated=None)
        outcome = validate_image(data, limits=PERMISSIVE_LIMITS, rules=OPEN_RULES)
        assert isinstance(outcome, ValidationRejected)
        assert outcome.error_code in {
            ErrorCode.PIXEL_FORMAT_UNSUPPORTED,
            ErrorCode.DICOM_INVALID_VALUE,
        }
        details = [
            verdict.detail for verdict in outcome.verdicts if verdict.check == "pixel_format"
        ]
        assert details
        assert all("bits" not in (detail or "") for detail in details)

    @pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
    def test_interrupts_pass_through(
        self, monkeypatch: pytest.MonkeyPatch, signal: type[BaseException]
    ) -> None:
        """Ctrl-C or an exit during validation stops the process; it is not a verdict."""

        def interrupted(*_a: Any, **_k: Any) -> Any:
            raise signal

        monkeypatch.setattr(validator, "_validate", interrupted)
        with pytest.raises(signal):
            validate_image(b"x", limits=PERMISSIVE_LIMITS, rules=OPEN_RULES)
