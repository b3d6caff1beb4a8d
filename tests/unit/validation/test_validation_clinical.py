"""Clinical rules: loaded strictly from data, each rule hit and missed, age never reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.errors import ErrorCode
from schemas.settings import ValidationSettings
from streams.validation import (
    ClinicalRules,
    ValidationAccepted,
    ValidationOutcome,
    ValidationRejected,
    load_clinical_rules,
    validate_image,
)
from tests.unit.validation.support import CT, SAMPLES, edited_dicom

pytestmark = pytest.mark.requirement("RS-VAL-06")

PNG = (SAMPLES / "raster" / "ct_256.png").read_bytes()
LIMITS = ValidationSettings()
RULES_FILE = ValidationSettings().clinical_rules_file


def _rules(**rule: object) -> ClinicalRules:
    return ClinicalRules.model_validate({"models": {"m": rule}})


def _check(data: bytes, rules: ClinicalRules, **kwargs: object) -> ValidationOutcome:
    return validate_image(data, limits=LIMITS, rules=rules, model_ids=("m",), **kwargs)  # type: ignore[arg-type]


def _rejected_with(outcome: ValidationOutcome) -> ErrorCode:
    assert isinstance(outcome, ValidationRejected), outcome
    return outcome.error_code


class TestLoading:
    def test_bundled_file_loads(self) -> None:
        """The default rules file (the settings' default path) loads and names models."""
        rules = load_clinical_rules(RULES_FILE)
        assert "ct-slice-triage" in rules.models

    def test_unknown_key_refused(self, tmp_path: Path) -> None:
        """A misspelt rule key is an error, not silently ignored."""
        path = tmp_path / "rules.yaml"
        path.write_text("default:\n  allowed_modalitys: [CT]\n", encoding="utf-8")
        with pytest.raises(ValidationError):
            load_clinical_rules(path)

    def test_unknown_dicom_keyword_refused(self) -> None:
        """required_attributes must be real DICOM keywords."""
        with pytest.raises(ValidationError):
            _rules(required_attributes=["PatientsShoeSize"])

    def test_body_part_that_is_no_defined_term_refused(self) -> None:
        """allowed_body_parts names DICOM defined terms only; the error names the stray one."""
        with pytest.raises(ValidationError, match=r"defined terms \(PS3.16 Annex L\): CHESTS \["):
            _rules(allowed_body_parts=["CHEST", "CHESTS"])

    def test_modality_that_is_no_defined_term_refused(self) -> None:
        """allowed_modalities names DICOM defined terms only: a typo could never match."""
        with pytest.raises(ValidationError, match=r"defined terms \(CID 33\): CTX \["):
            _rules(allowed_modalities=["CT", "CTX"])

    def test_assumed_modality_that_is_no_defined_term_refused(self) -> None:
        """The modality assumed for PNG/JPEG is a defined term too; None and CR are accepted."""
        with pytest.raises(ValidationError, match=r"defined terms \(CID 33\): XRAY \["):
            _rules(assumed_modality_for_non_dicom="XRAY")
        assert _rules(assumed_modality_for_non_dicom="CR") is not None
        assert _rules(assumed_modality_for_non_dicom=None) is not None

    def test_bundled_file_names_only_defined_body_parts(self) -> None:
        """The shipped rules pass the same check (they load, and name CHEST)."""
        rules = load_clinical_rules(RULES_FILE)
        assert rules.models["chest-xray-classifier"].allowed_body_parts == ("CHEST",)

    def test_inverted_range_refused(self) -> None:
        """A range whose min exceeds its max is refused."""
        with pytest.raises(ValidationError):
            _rules(pixel_spacing_mm={"min": 2, "max": 1})

    def test_string_number_refused(self) -> None:
        """Strict: a quoted number is not a number."""
        with pytest.raises(ValidationError):
            _rules(pixel_spacing_mm={"min": "0.1"})

    def test_non_mapping_refused(self, tmp_path: Path) -> None:
        """A YAML list at the top level is not a rules file."""
        path = tmp_path / "rules.yaml"
        path.write_text("- a\n", encoding="utf-8")
        with pytest.raises(ValueError, match="mapping"):
            load_clinical_rules(path)

    def test_rule_lookup(self) -> None:
        """name@version falls back to the name, then to the default rule."""
        rules = ClinicalRules.model_validate(
            {"models": {"m": {"allowed_modalities": ["CT"]}, "m@2": {"allowed_modalities": ["MR"]}}}
        )
        assert rules.rule_for("m@2").allowed_modalities == ("MR",)
        assert rules.rule_for("m@1").allowed_modalities == ("CT",)
        assert rules.rule_for("other") is rules.default


class TestRules:
    def test_default_rule_when_no_model(self) -> None:
        """Without requested models the default rule applies (and passes the CT)."""
        outcome = validate_image(CT, limits=LIMITS, rules=ClinicalRules())
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.verdicts[-1].check == "clinical:default"

    def test_modality_allowed(self) -> None:
        """CT passes a rule allowing CT."""
        assert isinstance(_check(CT, _rules(allowed_modalities=["CT"])), ValidationAccepted)

    def test_modality_refused(self) -> None:
        """CT fails a rule allowing only MR."""
        outcome = _check(CT, _rules(allowed_modalities=["MR"]))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_MODALITY_NOT_ALLOWED

    def test_format_refused(self) -> None:
        """PNG fails a DICOM-only rule."""
        outcome = _check(PNG, _rules(allowed_formats=["dicom"]))
        assert _rejected_with(outcome) is ErrorCode.MODEL_INPUT_INCOMPATIBLE

    def test_assumed_modality_for_png(self) -> None:
        """A rule's assumed modality applies to PNG instead of the event hint."""
        rules = _rules(
            allowed_formats=["png"], assumed_modality_for_non_dicom="DX", allowed_modalities=["DX"]
        )
        assert isinstance(_check(PNG, rules, event_modality="CT"), ValidationAccepted)

    def test_event_hint_for_png(self) -> None:
        """Without an assumed modality the event's hint is checked."""
        rules = _rules(allowed_formats=["png"], allowed_modalities=["DX"])
        outcome = _check(PNG, rules, event_modality="CT")
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_MODALITY_NOT_ALLOWED

    def test_body_part_refused(self) -> None:
        """A body part outside the list is refused."""
        data = edited_dicom("CT_small.dcm", BodyPartExamined="HEAD")
        outcome = _check(data, _rules(allowed_body_parts=["CHEST"]))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_BODY_PART_NOT_ALLOWED

    def test_body_part_allowed(self) -> None:
        """A listed body part passes."""
        data = edited_dicom("CT_small.dcm", BodyPartExamined="CHEST")
        outcome = _check(data, _rules(allowed_body_parts=["CHEST"]))
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.body_part == "CHEST"

    def test_body_part_in_lower_case_allowed(self) -> None:
        """A listed body part written in lower case is the same term, and passes."""
        data = edited_dicom("CT_small.dcm", BodyPartExamined="chest")
        outcome = _check(data, _rules(allowed_body_parts=["CHEST"]))
        assert isinstance(outcome, ValidationAccepted)
        assert outcome.body_part == "CHEST"

    def test_name_as_body_part_refused_without_it(self) -> None:
        """A code-shaped name is no body part a rule allows (as before), and is not repeated."""
        data = edited_dicom("CT_small.dcm", BodyPartExamined="CANARYDOE")
        outcome = _check(data, _rules(allowed_body_parts=["CHEST"]))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_BODY_PART_NOT_ALLOWED
        assert "CANARYDOE" not in outcome.model_dump_json()

    def test_name_as_body_part_passes_a_rule_without_a_list(self) -> None:
        """Without allowed_body_parts the name is simply no body part: accepted, not carried."""
        data = edited_dicom("CT_small.dcm", BodyPartExamined="CANARYDOE")
        outcome = _check(data, _rules(allowed_modalities=["CT"]))
        assert isinstance(outcome, ValidationAccepted)
        assert "CANARYDOE" not in outcome.model_dump_json()

    def test_required_attribute_missing(self) -> None:
        """A required attribute that is absent is CLINICAL_ATTRIBUTE_MISSING."""
        outcome = _check(CT, _rules(required_attributes=["BodyPartExamined"]))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_ATTRIBUTE_MISSING

    def test_required_attribute_present(self) -> None:
        """Present required attributes pass."""
        rules = _rules(required_attributes=["Modality", "PixelSpacing"])
        assert isinstance(_check(CT, rules), ValidationAccepted)

    def test_pixel_spacing_in_range(self) -> None:
        """The CT's 0.66 mm spacing is inside 0.1..2."""
        rules = _rules(pixel_spacing_mm={"min": 0.1, "max": 2})
        assert isinstance(_check(CT, rules), ValidationAccepted)

    def test_pixel_spacing_out_of_range(self) -> None:
        """The CT's 0.66 mm spacing is outside 1..2."""
        outcome = _check(CT, _rules(pixel_spacing_mm={"min": 1, "max": 2}))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_PIXEL_SPACING_INVALID

    def test_pixel_spacing_missing(self) -> None:
        """No spacing at all fails a spacing rule."""
        data = edited_dicom("CT_small.dcm", PixelSpacing=None)
        outcome = _check(data, _rules(pixel_spacing_mm={"min": 0.1}))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_PIXEL_SPACING_INVALID

    def test_imager_pixel_spacing_used(self) -> None:
        """ImagerPixelSpacing stands in when PixelSpacing is absent."""
        data = edited_dicom("CT_small.dcm", PixelSpacing=None, ImagerPixelSpacing=[0.2, 0.2])
        assert isinstance(_check(data, _rules(pixel_spacing_mm={"min": 0.1})), ValidationAccepted)

    def test_slice_thickness_out_of_range(self) -> None:
        """The CT's 5 mm slices fail a 0.5..2 mm rule."""
        outcome = _check(CT, _rules(slice_thickness_mm={"min": 0.5, "max": 2}))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_SLICE_THICKNESS_INVALID

    def test_slice_thickness_negative(self) -> None:
        """A non-positive thickness fails whatever the range."""
        data = edited_dicom("CT_small.dcm", SliceThickness=-1)
        outcome = _check(data, _rules(slice_thickness_mm={}))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_SLICE_THICKNESS_INVALID

    def test_slice_thickness_in_range(self) -> None:
        """5 mm passes 1..10."""
        assert isinstance(
            _check(CT, _rules(slice_thickness_mm={"min": 1, "max": 10})), (ValidationAccepted)
        )

    def test_model_input_too_small(self) -> None:
        """128 px is below a model's 224 px minimum."""
        outcome = _check(CT, _rules(model_input={"min_width": 224, "min_height": 224}))
        assert _rejected_with(outcome) is ErrorCode.MODEL_INPUT_INCOMPATIBLE

    def test_model_input_channels(self) -> None:
        """A greyscale-only model refuses RGB input."""
        data = (SAMPLES / "raster" / "us_rgb_320x240.png").read_bytes()
        rules = _rules(allowed_formats=["png"], model_input={"samples_per_pixel": [1]})
        assert _rejected_with(_check(data, rules)) is ErrorCode.MODEL_INPUT_INCOMPATIBLE

    def test_every_model_checked(self) -> None:
        """With several models, a miss in the second one rejects."""
        rules = ClinicalRules.model_validate(
            {"models": {"a": {}, "b": {"allowed_modalities": ["MR"]}}}
        )
        outcome = validate_image(CT, limits=LIMITS, rules=rules, model_ids=("a", "b"))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_MODALITY_NOT_ALLOWED
        assert "model b" in outcome.reason


class TestPatientAge:
    # The CT sample's fake birth date 19700101 and StudyDate 20040119 make it 34 years old;
    # its PatientAge says "000Y", which wins when present.

    def test_age_from_birth_date(self) -> None:
        """Without PatientAge the age comes from birth and study dates (34: inside 18..120)."""
        data = edited_dicom("CT_small.dcm", PatientAge=None, PatientBirthDate="19700101")
        rules = _rules(patient_age_years={"min": 18, "max": 120})
        assert isinstance(_check(data, rules), ValidationAccepted)

    def test_age_from_birth_date_out_of_range(self) -> None:
        """34 years fails a 40..120 rule."""
        data = edited_dicom("CT_small.dcm", PatientAge=None, PatientBirthDate="19700101")
        outcome = _check(data, _rules(patient_age_years={"min": 40, "max": 120}))
        assert _rejected_with(outcome) is ErrorCode.CLINICAL_PATIENT_AGE_OUT_OF_RANGE

    @pytest.mark.parametrize(("age", "passes"), [("045Y", True), ("006M", False), ("010W", False)])
    def test_patient_age_attribute(self, age: str, passes: bool) -> None:
        """PatientAge in years, months or weeks is compared with an 18..120 range."""
        data = edited_dicom("CT_small.dcm", PatientAge=age)
        outcome = _check(data, _rules(patient_age_years={"min": 18, "max": 120}))
        assert outcome.accepted is passes

    def test_unknown_age_required(self) -> None:
        """An unknown age fails when the rule requires one."""
        data = edited_dicom("CT_small.dcm", PatientAge=None, PatientBirthDate=None)
        rules = _rules(patient_age_years={"min": 18}, require_patient_age=True)
        assert _rejected_with(_check(data, rules)) is ErrorCode.CLINICAL_ATTRIBUTE_MISSING

    def test_unknown_age_tolerated(self) -> None:
        """An unknown age passes when the rule does not require one."""
        data = edited_dicom("CT_small.dcm", PatientAge=None, PatientBirthDate="garbage")
        assert isinstance(_check(data, _rules(patient_age_years={"min": 18})), ValidationAccepted)

    def test_age_never_in_output(self) -> None:
        """Neither the age, the birth date nor the range appears in the reason or verdicts."""
        data = edited_dicom("CT_small.dcm", PatientAge="034Y", PatientBirthDate="19700101")
        outcome = _check(data, _rules(patient_age_years={"min": 41.5, "max": 97.25}))
        assert isinstance(outcome, ValidationRejected)
        text = " ".join([outcome.reason, *(verdict.detail for verdict in outcome.verdicts)])
        for secret in ("034Y", "34", "19700101", "1970", "41.5", "97.25"):
            assert secret not in text
