"""The result report: a TID 1500 Comprehensive SR in the source study, referencing the source."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import UID

from schemas.events import InferenceCompleted, ModelRef
from schemas.settings import SAMPLES_DIR
from streams.dicom.reports import (
    REPORT_SOP_CLASS_UID,
    TYPE2_FROM_SOURCE,
    build_result_report,
    derived_uid,
    report_identity,
    with_type2_present,
)
from tests.dicom_support import PHI_CANARIES, sample_path

DIGEST = "f5" * 32


def result(**overrides: object) -> InferenceCompleted:
    fields: dict[str, object] = {
        "event_id": uuid.UUID(int=1),
        "result_id": uuid.UUID(int=2),
        "correlation_id": "corr",
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "model": ModelRef(
            name="lesion-detector",
            version="1.1.0",
            weights_sha256=DIGEST,
            runtime="onnxruntime",
            provider="CPUExecutionProvider",
        ),
        "input_sha256": "ab" * 32,
        "thresholds": {"lesion": 0.5},
        "scores": {"lesion": 0.87},
        "decision": "lesion",
        "inference_seconds": 0.1,
    }
    fields.update(overrides)
    return InferenceCompleted.model_validate(fields)


def source() -> Dataset:
    return dcmread(sample_path("CT_small.dcm"), stop_before_pixels=True)


def content_values(report: Dataset) -> list[object]:
    """Every value in the content tree (numeric, code meanings, texts, UIDs), flattened."""
    found: list[object] = []

    def walk(items: object) -> None:
        for item in items or []:  # type: ignore[attr-defined]
            for seq in ("MeasuredValueSequence", "ConceptCodeSequence"):
                found.extend(
                    inner.get("NumericValue", inner.get("CodeValue")) for inner in item.get(seq, [])
                )
            if "TextValue" in item:
                found.append(item.TextValue)
            if "UID" in item:
                found.append(item.UID)
            found.extend(r.ReferencedSOPInstanceUID for r in item.get("ReferencedSOPSequence", []))
            walk(item.get("ContentSequence"))

    walk(report.ContentSequence)
    return found


class TestReport:
    def test_report_is_in_the_source_study_with_its_patient(self) -> None:
        """The SR joins the source's study; patient attributes come from the source dataset."""
        src = source()
        report = build_result_report(src, result())
        assert report.SOPClassUID == REPORT_SOP_CLASS_UID
        assert report.StudyInstanceUID == src.StudyInstanceUID
        assert report.PatientID == src.PatientID
        assert report.SeriesInstanceUID != src.SeriesInstanceUID

    def test_report_references_the_source_instance(self) -> None:
        """The measurement group references the source SOP instance (and the evidence does)."""
        src = source()
        report = build_result_report(src, result())
        assert src.SOPInstanceUID in content_values(report)
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert referenced.ReferencedSOPInstanceUID == src.SOPInstanceUID

    def test_report_holds_score_decision_and_model_provenance(self) -> None:
        """Score, decision, model name/version and the weights digest are in the content."""
        values = [str(v) for v in content_values(build_result_report(source(), result()))]
        assert any(v.startswith("0.87") for v in values)
        assert "lesion" in values
        assert "lesion-detector" in values
        assert "1.1.0" in values
        assert f"weights_sha256={DIGEST}" in values

    def test_report_is_complete_and_unverified(self) -> None:
        """An AI result awaiting a radiologist: complete, not verified."""
        report = build_result_report(source(), result())
        assert (report.CompletionFlag, report.VerificationFlag) == ("COMPLETE", "UNVERIFIED")

    def test_uids_are_derived_from_the_result(self) -> None:
        """The same result gives the same report instance; another result another one."""
        first = build_result_report(source(), result())
        again = build_result_report(source(), result())
        other = build_result_report(source(), result(result_id=uuid.UUID(int=3)))
        assert first.SOPInstanceUID == again.SOPInstanceUID != other.SOPInstanceUID
        assert first.SeriesInstanceUID == other.SeriesInstanceUID  # one series per model & study
        identity = report_identity(result(), str(first.StudyInstanceUID))
        assert identity.sop_instance_uid == first.SOPInstanceUID

    def test_derived_uids_are_valid_uids(self) -> None:
        """Derived UIDs use the 2.25 root and fit in 64 characters."""
        uid = derived_uid("a", "b")
        assert uid.startswith("2.25.")
        assert UID(uid).is_valid

    def test_phi_only_in_patient_attributes(self) -> None:
        """PHI of the source travels only in the patient/study module the PACS needs."""
        src = source()
        for keyword in ("PatientName", "PatientID", "AccessionNumber"):
            setattr(src, keyword, PHI_CANARIES[keyword])
        report = build_result_report(src, result())
        assert str(report.PatientName) == PHI_CANARIES["PatientName"]
        assert not any("CANARY" in str(v).upper() for v in content_values(report))


class TestSourceWithoutType2Attributes:
    """Senders omit Type 2 attributes (phantoms, de-identified studies): the report is still
    built, with those attributes empty, and the stored source is not changed."""

    def test_missing_patient_and_study_attributes_are_empty_in_the_report(self) -> None:
        src = source()
        for keyword in TYPE2_FROM_SOURCE:
            if keyword not in ("PatientName", "PatientID"):
                delattr(src, keyword)
        report = build_result_report(src, result())
        for keyword in TYPE2_FROM_SOURCE:
            assert keyword in report
        assert (report.PatientBirthDate, report.StudyDate, report.AccessionNumber) == (
            None,
            None,
            None,
        )
        assert report.PatientID == src.PatientID
        assert report.StudyInstanceUID == src.StudyInstanceUID
        assert "PatientBirthDate" not in src
        assert "StudyDate" not in src

    def test_a_complete_source_is_used_as_it_is(self) -> None:
        src = source()
        assert with_type2_present(src) is src

    @pytest.mark.parametrize("name", ["ct_phantom_clear.dcm", "ct_phantom_lesion.dcm"])
    def test_the_bundled_phantoms_get_a_report(self, name: str) -> None:
        """The demo's phantoms carry only the patient's name and id (make demo-dicom sends them)."""
        src = dcmread(SAMPLES_DIR / "dicom" / name, stop_before_pixels=True)
        report = build_result_report(src, result())
        assert report.StudyInstanceUID == src.StudyInstanceUID
        assert report.PatientID == src.PatientID
