"""Received instances: what is accepted, what is refused (naming attributes, never values)."""

from __future__ import annotations

import struct

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

import streams.dicom.instances as instances_module
from schemas.errors import ErrorCode, InputValidationError
from streams.dicom.instances import (
    arrival_event_id,
    arrival_for_instance,
    read_instance,
    referenced_uids,
    valid_uid,
)
from tests.dicom_support import SAMPLE_FILES, sample_bytes, sample_path, variant


def refusal(data: bytes) -> InputValidationError:
    with pytest.raises(InputValidationError) as caught:
        read_instance(data)
    return caught.value


class TestAccepted:
    @pytest.mark.parametrize("name", SAMPLE_FILES)
    def test_sample_transfer_syntaxes_are_accepted(self, name: str) -> None:
        """Explicit LE, RLE, JPEG 2000, JPEG baseline and deflate instances are read."""
        instance = read_instance(sample_bytes(name))
        dataset = dcmread(sample_path(name), stop_before_pixels=True)
        assert instance.sop_instance_uid == dataset.SOPInstanceUID
        assert instance.study_instance_uid == dataset.StudyInstanceUID
        assert instance.transfer_syntax_uid == dataset.file_meta.TransferSyntaxUID

    def test_modality_comes_from_the_header(self) -> None:
        """The modality is the header's."""
        assert read_instance(sample_bytes("CT_small.dcm")).modality == "CT"

    def test_free_text_modality_is_dropped(self) -> None:
        """A modality that is not a short code is left out rather than carried."""
        assert read_instance(variant(Modality="Doe Jane")).modality is None

    def test_code_shaped_free_text_modality_is_dropped(self) -> None:
        """A name in code-string shape is not a defined term either (schemas/modality.py)."""
        assert read_instance(variant(Modality="DOEJANE")).modality is None


class TestRefused:
    def test_empty(self) -> None:
        """Zero bytes are IMAGE_EMPTY."""
        assert refusal(b"").code is ErrorCode.IMAGE_EMPTY

    def test_not_part10(self) -> None:
        """Bytes without the DICOM preamble are DICOM_NOT_PART10."""
        assert refusal(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200).code is ErrorCode.DICOM_NOT_PART10

    @pytest.mark.parametrize("cut", [150, 400, 600])
    def test_truncated_header_is_refused_with_a_code(self, cut: int) -> None:
        """pydicom reads a cut header without error; the missing attributes are named."""
        error = refusal(sample_bytes("CT_small.dcm")[:cut])
        assert error.code in {
            ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING,
            ErrorCode.DICOM_INVALID_VALUE,
        }

    def test_library_failure_is_translated(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Whatever pydicom raises on a corrupt header becomes IMAGE_MALFORMED."""

        def corrupt(*_args: object, **_kwargs: object) -> None:
            raise struct.error("unpack requires a buffer of 4 bytes")

        monkeypatch.setattr(instances_module, "dcmread", corrupt)
        assert refusal(sample_bytes()).code is ErrorCode.IMAGE_MALFORMED

    def test_structured_report_is_not_an_image(self) -> None:
        """Non-image SOP classes (here an RT plan) are DICOM_SOP_CLASS_UNSUPPORTED."""
        error = refusal(sample_bytes("rtplan.dcm"))
        assert error.code is ErrorCode.DICOM_SOP_CLASS_UNSUPPORTED

    def test_big_endian_is_not_accepted(self) -> None:
        """The retired big-endian transfer syntax is TRANSFER_SYNTAX_UNSUPPORTED."""
        error = refusal(sample_bytes("MR_small_bigendian.dcm"))
        assert error.code is ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED

    def test_missing_transfer_syntax(self) -> None:
        """A file meta without TransferSyntaxUID is DICOM_TRANSFER_SYNTAX_MISSING."""
        dataset = dcmread(sample_path("CT_small.dcm"))
        del dataset.file_meta.TransferSyntaxUID
        buffer = to_bytes_without_meta_checks(dataset)
        assert refusal(buffer).code is ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING

    def test_phi_shaped_uid_is_refused_without_its_value(self) -> None:
        """A StudyInstanceUID holding a name is refused; the reason names the attribute only."""
        error = refusal(variant(StudyInstanceUID="DOE^JANE^1945"))
        assert error.code is ErrorCode.DICOM_INVALID_VALUE
        assert "StudyInstanceUID" in error.reason
        assert "DOE" not in error.reason

    def test_meta_and_dataset_disagree(self) -> None:
        """A file meta naming another SOP instance than the dataset is refused."""
        dataset = dcmread(sample_path("CT_small.dcm"))
        dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        assert refusal(to_bytes_without_meta_checks(dataset)).code is ErrorCode.DICOM_INVALID_VALUE


def to_bytes_without_meta_checks(dataset: object) -> bytes:
    """Write a dataset whose file meta lacks the transfer syntax (pydicom refuses to)."""
    from io import BytesIO  # noqa: PLC0415

    from pydicom.filewriter import dcmwrite  # noqa: PLC0415

    buffer = BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=False, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


class TestArrivalEvent:
    def test_event_id_is_derived_from_sop_instance_and_bytes(self) -> None:
        """The same instance resent gets the same event id; other bytes another one."""
        assert arrival_event_id("1.2.3", "a" * 64) == arrival_event_id("1.2.3", "a" * 64)
        assert arrival_event_id("1.2.3", "a" * 64) != arrival_event_id("1.2.3", "b" * 64)
        assert arrival_event_id("1.2.3", "a" * 64) != arrival_event_id("1.2.4", "a" * 64)

    def test_event_is_keyed_by_study_and_carries_routing_facts_only(self) -> None:
        """Key = StudyInstanceUID; the event holds UIDs, modality, size, digest, no PHI."""
        data = variant(phi=True)
        instance = read_instance(data)
        event = arrival_for_instance(
            instance,
            sha256="c" * 64,
            size_bytes=len(data),
            image_uri="file:///store/x.dcm",
            source="ORTHANC",
        )
        assert event.message_key() == instance.study_instance_uid.encode()
        assert event.event_id == arrival_event_id(instance.sop_instance_uid, "c" * 64)
        assert (event.modality, event.size_bytes, event.content_type) == (
            "CT",
            len(data),
            "application/dicom",
        )
        assert "CANARY" not in event.model_dump_json().upper()


class TestReferencedUids:
    def test_well_formed_uids_are_returned(self) -> None:
        """A readable instance's SOP class and instance UIDs are returned for a failure entry."""
        assert referenced_uids(sample_bytes("rtplan.dcm"))[0] == "1.2.840.10008.5.1.4.1.1.481.5"

    def test_free_text_uid_is_left_out(self) -> None:
        """A SOP Instance UID that is not a UID is never echoed."""
        _, instance = referenced_uids(variant(SOPInstanceUID="DOE^JANE"))
        assert instance is None

    def test_unreadable_bytes_reference_nothing(self) -> None:
        """Garbage references nothing."""
        assert referenced_uids(b"garbage") == (None, None)

    def test_valid_uid_grammar(self) -> None:
        """UIDs are digits and dots, at most 64 characters."""
        assert valid_uid("1.2.3") == "1.2.3"
        assert valid_uid("1." + "2" * 70) is None
        assert valid_uid("1.2.a") is None
        assert valid_uid(None) is None


def test_pydicom_test_files_are_available() -> None:
    """The samples come with pydicom (offline), so these tests need no download."""
    assert get_testdata_file("CT_small.dcm") is not None
