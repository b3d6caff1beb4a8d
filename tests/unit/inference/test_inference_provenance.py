"""Every result carries full provenance and nothing that identifies the patient."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from schemas.events import ImageFormat, ImageGeometry, InferenceCompleted
from streams.inference.batching import InferenceOutcome, InferenceRequest, infer_batch
from streams.inference.registry import ModelRegistry
from streams.inference.routing import RoutingRules
from tests.unit.inference.inference_builders import REGISTRY_DIR, make_event

pytestmark = pytest.mark.requirement("RS-INF-06", "RS-G-02")

FIXED_NOW = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
PINNED = "lesion-detector@1.1.0"
# PS3.15 Annex E attributes present in pydicom's CT_small.dcm that must never leak.
PHI_KEYWORDS = ("PatientName", "PatientID", "InstitutionName", "StudyID", "StudyDate")


@pytest.fixture(scope="module")
def ct_small() -> pydicom.Dataset:
    """pydicom's bundled CT test file (contains test patient attributes)."""
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


@pytest.fixture(scope="module")
def ct_request(ct_small: pydicom.Dataset) -> InferenceRequest:
    """A request for CT_small.dcm's pixels in Hounsfield units, as the validator decodes them.

    It pins lesion-detector 1.1.0, the last version without an input guard, so a real CT
    slice gets a result whose provenance can be checked (1.2.0 refuses it, see below).
    """
    hu = ct_small.pixel_array.astype(np.float32) * float(ct_small.RescaleSlope) + float(
        ct_small.RescaleIntercept
    )
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    geometry = ImageGeometry(
        format=ImageFormat.DICOM,
        width=int(ct_small.Columns),
        height=int(ct_small.Rows),
        dtype="int16",
        rescale_intercept=float(ct_small.RescaleIntercept),
    )
    event = make_event(sha256=digest, geometry=geometry, model_ids=(PINNED,))
    return InferenceRequest(event, "corr-ct-small", hu)


@pytest.fixture(scope="module")
def routed_request(ct_request: InferenceRequest) -> InferenceRequest:
    """The same image with no model requested: the routing rules decide."""
    event = ct_request.event.model_copy(update={"model_ids": ()})
    return InferenceRequest(event, ct_request.correlation_id, ct_request.pixels)


@pytest.fixture(scope="module")
def ct_outcome(
    ct_request: InferenceRequest,
    reference_registry: ModelRegistry,
    reference_rules: RoutingRules,
) -> InferenceOutcome:
    """The pinned reference model's outcome for CT_small.dcm."""
    return infer_batch([ct_request], reference_registry, reference_rules, clock=lambda: FIXED_NOW)[
        0
    ]


def _result(outcome: InferenceOutcome) -> InferenceCompleted:
    assert outcome.result is not None, outcome.error
    return outcome.result


class TestProvenance:
    """What a result records."""

    def test_links_to_the_arrival_event_and_correlation(
        self, ct_outcome: InferenceOutcome, ct_request: InferenceRequest
    ) -> None:
        """Event id, correlation id and arrival time are the request's."""
        result = _result(ct_outcome)
        assert (result.event_id, result.correlation_id, result.occurred_at) == (
            ct_request.event.event_id,
            "corr-ct-small",
            ct_request.event.occurred_at,
        )

    def test_model_identity_matches_the_committed_weights(
        self, ct_outcome: InferenceOutcome
    ) -> None:
        """The pinned version ran; the digest is that of the file on disk."""
        model = _result(ct_outcome).model
        weights = (REGISTRY_DIR / model.name / model.version / "model.onnx").read_bytes()
        assert (model.name, model.version) == ("lesion-detector", "1.1.0")
        assert model.weights_sha256 == hashlib.sha256(weights).hexdigest()
        assert (model.runtime, model.provider) == ("onnxruntime", "CPUExecutionProvider")

    def test_input_digest_and_verdicts_are_the_validated_ones(
        self, ct_outcome: InferenceOutcome, ct_request: InferenceRequest
    ) -> None:
        """input_sha256 is the file's digest; the validator verdicts travel along."""
        result = _result(ct_outcome)
        assert result.input_sha256 == ct_request.event.sha256
        assert result.verdicts == ct_request.event.verdicts

    def test_scores_thresholds_and_decision_are_consistent(
        self, ct_outcome: InferenceOutcome
    ) -> None:
        """One score per label in [0, 1], the manifest's threshold, and the matching decision."""
        result = _result(ct_outcome)
        score = result.scores["lesion"]
        assert set(result.scores) == set(result.thresholds) == {"lesion"}
        assert 0.0 <= score <= 1.0
        assert result.thresholds["lesion"] == 0.5
        assert result.decision == ("lesion" if score >= 0.5 else "no_finding")

    def test_timing_batch_and_timestamps(self, ct_outcome: InferenceOutcome) -> None:
        """Inference time is measured, batch size recorded, timestamps are UTC."""
        result = _result(ct_outcome)
        assert result.inference_seconds > 0
        assert result.batch_size == 1
        assert result.completed_at == FIXED_NOW
        assert (
            result.completed_at.utcoffset() == result.occurred_at.utcoffset() == UTC.utcoffset(None)
        )

    def test_result_id_is_unique_per_result(
        self,
        ct_request: InferenceRequest,
        reference_registry: ModelRegistry,
        reference_rules: RoutingRules,
    ) -> None:
        """Two runs of the same image give two different result ids."""
        outcomes = infer_batch([ct_request, ct_request], reference_registry, reference_rules)
        assert len({_result(outcome).result_id for outcome in outcomes}) == 2

    def test_result_is_reproducible_for_the_same_input(
        self,
        ct_request: InferenceRequest,
        reference_registry: ModelRegistry,
        reference_rules: RoutingRules,
    ) -> None:
        """Same weights, same pixels: same score, batched or not."""
        single = infer_batch([ct_request], reference_registry, reference_rules)
        batched = infer_batch([ct_request] * 3, reference_registry, reference_rules)
        expected = _result(single[0]).scores["lesion"]
        assert [_result(o).scores["lesion"] for o in batched] == pytest.approx([expected] * 3)


class TestRouting:
    """The shipped routing rules send a CT slice to both reference models."""

    def test_real_ct_is_refused_by_the_lesion_model_and_scored_for_quality(
        self,
        routed_request: InferenceRequest,
        reference_registry: ModelRegistry,
        reference_rules: RoutingRules,
    ) -> None:
        """lesion-detector's guard refuses a real CT; image-quality scores it, own threshold."""
        lesion, quality = infer_batch([routed_request], reference_registry, reference_rules)
        assert lesion.model_id == "lesion-detector@1.2.0"
        assert lesion.error is not None
        assert lesion.error.code.value == "MODEL_INPUT_OUT_OF_DISTRIBUTION"
        assert "fraction_high" in lesion.error.reason
        result = _result(quality)
        assert (result.model.name, result.decision) == ("image-quality", "acceptable")
        assert result.thresholds == {"noise": quality_threshold(reference_registry)}


def quality_threshold(registry: ModelRegistry) -> float:
    """The image-quality model's own decision threshold (not lesion-detector's 0.5)."""
    threshold = registry.resolve("image-quality").manifest.output.thresholds["noise"]
    assert threshold != 0.5
    return threshold


class TestNoPatientData:
    """Nothing from the DICOM header's patient attributes reaches a result or a rejection."""

    def test_result_json_holds_no_phi(
        self, ct_outcome: InferenceOutcome, ct_small: pydicom.Dataset
    ) -> None:
        """None of CT_small.dcm's identifying values appear in the serialised result."""
        text = _result(ct_outcome).model_dump_json()
        values = [str(ct_small.get(keyword, "")) for keyword in PHI_KEYWORDS]
        present = [value for value in values if value]
        assert len(present) >= 3  # the test file really carries patient attributes
        assert [value for value in present if value in text] == []

    def test_rejection_holds_no_phi(
        self,
        routed_request: InferenceRequest,
        ct_small: pydicom.Dataset,
        reference_registry: ModelRegistry,
        reference_rules: RoutingRules,
    ) -> None:
        """A refusal of the same image (out of distribution) names no patient attribute."""
        outcome = infer_batch([routed_request], reference_registry, reference_rules)[0]
        text = outcome.rejection().model_dump_json()
        assert "CompressedSamples" not in text
        assert str(ct_small.PatientID) not in text

    def test_result_has_no_patient_fields(self) -> None:
        """The contract has no field for a patient name, id or birth date."""
        assert not {f for f in InferenceCompleted.model_fields if f.startswith("patient")}
