"""The DICOM Structured Report that carries one inference result back to the PACS.

A TID 1500 *Imaging Measurement Report* (Comprehensive SR) built with highdicom, placed in the
source image's study: patient and study attributes are copied by highdicom from the source
dataset (read from the stored instance at export time; they never travel on Kafka). One
measurement group (TID 1501) references the source SOP instance and holds

* one numeric measurement per score (unit "no units"), with the algorithm identification
  (TID 4019: model name, version; parameters: weights SHA-256, runtime, thresholds);
* the decision as a qualitative evaluation.

Concepts radstream defines itself use the private coding scheme ``99RADSTREAM`` (PS3.16 8.2
allows ``99``-prefixed local schemes). The report is marked complete and *unverified*: an AI
result awaiting a radiologist. UIDs are derived from the result, so sending the same result
again produces the same SOP instance (a PACS keeps one copy).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes

from schemas.events import InferenceCompleted

REPORT_SOP_CLASS_UID: Final = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR Storage
CODING_SCHEME: Final = "99RADSTREAM"
MANUFACTURER: Final = "radstream"
REPORT_SERIES_NUMBER: Final = 9901
_UID_NAMESPACE: Final = uuid.UUID("b7d0a4e2-5c3f-4e8b-9d61-2f7a0c1e8b94")
_NO_UNITS: Final = hd.sr.CodedConcept("1", "UCUM", "no units")
_PROCEDURE: Final = hd.sr.CodedConcept("AI-ANALYSIS", CODING_SCHEME, "AI image analysis")
_DECISION: Final = hd.sr.CodedConcept("DECISION", CODING_SCHEME, "AI decision")
_FINDING: Final = hd.sr.CodedConcept("AI-FINDING", CODING_SCHEME, "AI finding")


def derived_uid(*parts: str) -> str:
    """A UID under the ``2.25`` root (PS3.5 B.2), derived from ``parts``: same parts, same UID."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '|'.join(parts)).int}"


@dataclass(frozen=True, slots=True)
class ReportIdentity:
    """Where a result's report lives: its series and SOP instance (derived, stable)."""

    series_instance_uid: str
    sop_instance_uid: str


def report_sop_instance_uid(result_id: uuid.UUID) -> str:
    """The SOP Instance UID of the report of the result ``result_id``."""
    return derived_uid("report", str(result_id))


def report_identity(result: InferenceCompleted, study_instance_uid: str) -> ReportIdentity:
    """The report's UIDs: one series per model version and study, one instance per result."""
    return ReportIdentity(
        series_instance_uid=derived_uid(
            "series", study_instance_uid, result.model.name, result.model.version
        ),
        sop_instance_uid=report_sop_instance_uid(result.result_id),
    )


# The Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that
# highdicom reads from the evidence without a default. Type 2 means present but possibly empty;
# senders still omit them (research phantoms and de-identified studies do), and the report of
# such an image must not fail for it.
TYPE2_FROM_SOURCE: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


def with_type2_present(source: Dataset) -> Dataset:
    """``source``, or a copy of its top level with the missing :data:`TYPE2_FROM_SOURCE` empty.

    The copy shares the source's data elements (none is changed) but not its element dict, so
    the source stays as it was read.
    """
    missing = [keyword for keyword in TYPE2_FROM_SOURCE if keyword not in source]
    if not missing:
        return source
    filled = Dataset()
    for element in source:
        filled.add(element)
    for keyword in missing:
        setattr(filled, keyword, None)  # an empty element of the keyword's VR
    return filled


def _concept(value: str, meaning: str | None = None) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value[:16], CODING_SCHEME, meaning or value)


def _algorithm(result: InferenceCompleted) -> hd.sr.AlgorithmIdentification:
    model = result.model
    parameters = [
        f"weights_sha256={model.weights_sha256}",
        f"runtime={model.runtime}",
        *(f"threshold_{label}={value:g}" for label, value in sorted(result.thresholds.items())),
    ]
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, parameters=parameters, manufacturer=MANUFACTURER
    )


def build_result_report(source: Dataset, result: InferenceCompleted) -> Dataset:
    """The Comprehensive SR of ``result`` about the ``source`` image, in the source's study.

    Args:
        source: the stored source instance's dataset (pixel data not needed).
        result: the inference result; its scores, decision and model provenance.

    Type 2 patient and study attributes the source omits (:data:`TYPE2_FROM_SOURCE`) are
    empty in the report, as Type 2 allows; the source itself is not changed.

    Raises:
        ValueError: the source lacks what a report needs (highdicom's checks).
        AttributeError: the source lacks a Type 1 attribute (StudyInstanceUID, SOPClassUID,
            SOPInstanceUID).
    """
    algorithm = _algorithm(result)
    identity = report_identity(result, str(source.StudyInstanceUID))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("tracking", str(result.result_id)),
            identifier=f"{result.model.name} {result.model.version}"[:64],
        ),
        finding_type=_FINDING,
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        measurements=[
            hd.sr.Measurement(
                name=_concept(f"SCORE-{label}".upper(), f"{label} score"),
                value=float(score),
                unit=_NO_UNITS,
                algorithm_id=algorithm,
            )
            for label, score in sorted(result.scores.items())
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=_DECISION, value=_concept(result.decision))
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", result.model.name, result.model.version),
            name=result.model.name[:64],
            manufacturer_name=MANUFACTURER,
            model_name=result.model.version[:64],
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_PROCEDURE,
        imaging_measurements=[group],
    )
    return hd.sr.ComprehensiveSR(
        evidence=[with_type2_present(source)],
        content=content[0],
        series_instance_uid=identity.series_instance_uid,
        series_number=REPORT_SERIES_NUMBER,
        sop_instance_uid=identity.sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="radstream AI result (unverified)",
    )
