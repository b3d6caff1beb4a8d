"""Received instances: what is accepted, what is refused (naming attributes, never values)."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom import Dataset, dcmread
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
from tests.dicom_support import (
    SAMPLE_FILES,
    sample_bytes,
    sample_path,
    to_bytes,
    variant,
    with_corrupt_length,
)


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

    def test_header_cut_in_the_file_meta_has_no_transfer_syntax(self) -> None:
        """Bytes that end inside the file meta are DICOM_TRANSFER_SYNTAX_MISSING (C000)."""
        assert refusal(sample_bytes("CT_small.dcm")[:150]).code is (
            ErrorCode.DICOM_TRANSFER_SYNTAX_MISSING
        )

    def test_header_cut_between_elements_names_the_missing_attribute(self) -> None:
        """Bytes that end exactly after an element look like a dataset that ends there: what
        is missing is named (no trace tells this cut from a dataset written so)."""
        error = refusal(sample_bytes("CT_small.dcm")[:400])
        assert error.code is ErrorCode.DICOM_INVALID_VALUE
        assert "SOPClassUID" in error.reason

    @pytest.mark.parametrize("cut", [600, 2204, 2224])
    def test_header_cut_inside_an_element_could_not_be_read(self, cut: int) -> None:
        """Bytes that end inside an element's value (600, 2224) or header (2204) are
        IMAGE_MALFORMED, not "StudyInstanceUID is missing": pydicom reads them without error
        and returns the elements before the cut."""
        error = refusal(sample_bytes("CT_small.dcm")[:cut])
        assert error.code is ErrorCode.IMAGE_MALFORMED
        assert "could not be read" in error.reason

    @pytest.mark.parametrize("keyword", ["SOPInstanceUID", "Modality", "PatientName"])
    def test_corrupt_element_length_could_not_be_read(self, keyword: str) -> None:
        """An element whose length runs past the end swallows the rest of the dataset: that is
        IMAGE_MALFORMED (C000) with a reason quoting nothing from the dataset."""
        error = refusal(with_corrupt_length(variant(phi=True), keyword))
        assert error.code is ErrorCode.IMAGE_MALFORMED
        assert error.reason == (
            "the dataset could not be read: it is cut short or an element's length is corrupt"
        )

    def test_cut_inside_an_undefined_length_sequence(self) -> None:
        """A cut inside an undefined-length sequence is IMAGE_MALFORMED too (pydicom raises
        there, looking for the next item; the translation keeps it C000)."""
        dataset = dcmread(BytesIO(variant()))
        item = Dataset()
        item.CodeValue = "CANARY1"
        item.is_undefined_length_sequence_item = True
        dataset.ProcedureCodeSequence = [item]
        dataset["ProcedureCodeSequence"].is_undefined_length = True
        data = to_bytes(dataset)
        assert b"\xfe\xff\xdd\xe0" in data  # the sequence delimiter: undefined length
        value_at = data.index(b"CANARY1")
        # Cut inside the item's CodeValue: its declared length now runs past the end.
        with pytest.raises(InputValidationError) as caught:
            read_instance(data[: value_at + 3])
        assert caught.value.code is ErrorCode.IMAGE_MALFORMED

    def test_missing_study_uid_on_a_well_formed_dataset_is_still_a900(self) -> None:
        """A well-formed dataset without StudyInstanceUID is DICOM_INVALID_VALUE (A900)."""
        dataset = dcmread(BytesIO(variant()))
        del dataset.StudyInstanceUID
        error = refusal(to_bytes(dataset))
        assert error.code is ErrorCode.DICOM_INVALID_VALUE
        assert error.reason == "StudyInstanceUID is missing or not a valid UID"

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
