"""The router simulator builds PHI-free arrival events from local files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from streams.router import arrival_for_file
from tests.dicom_support import variant

pytestmark = pytest.mark.requirement("RS-PUB-01")


class TestArrivalForFile:
    def test_dicom_gets_uids_size_and_checksum(self, tmp_path: Path) -> None:
        """A DICOM file yields its routing UIDs, modality, size and SHA-256."""
        path = tmp_path / "ct.dcm"
        shutil.copy(get_testdata_file("CT_small.dcm"), path)
        event = arrival_for_file(path, source="PACS1", model_ids=["lesion-detector"])
        data = path.read_bytes()
        assert event.sha256 == hashlib.sha256(data).hexdigest()
        assert event.size_bytes == len(data)
        assert event.modality == "CT"
        assert event.study_instance_uid
        assert event.study_instance_uid.startswith("1.3.6.1.4.1.5962")
        assert event.image_uri == path.resolve().as_uri()
        assert event.model_ids == ("lesion-detector",)

    def test_event_carries_no_patient_data(self, tmp_path: Path) -> None:
        """The test file's patient name and ID never reach the event."""
        path = tmp_path / "ct.dcm"
        shutil.copy(get_testdata_file("CT_small.dcm"), path)
        text = arrival_for_file(path, source="PACS1").model_dump_json()
        assert "CompressedSamples" not in text
        assert "1CT1" not in text

    def test_header_modality_that_is_no_defined_term_is_left_out(self, tmp_path: Path) -> None:
        """A name in the header's Modality is not carried (nor refused: the image goes on)."""
        path = tmp_path / "ct.dcm"
        path.write_bytes(variant(Modality="DOEJANE"))
        event = arrival_for_file(path, source="PACS1")
        assert event.modality is None
        assert "DOEJANE" not in event.model_dump_json()

    def test_non_dicom_file_has_no_uids(self, tmp_path: Path) -> None:
        """A PNG has no DICOM header; the event still names the file and its checksum."""
        path = tmp_path / "x.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
        event = arrival_for_file(path, source="PACS1", with_checksum=False)
        assert event.study_instance_uid is None
        assert event.sha256 is None
        assert event.content_type == "image/png"
