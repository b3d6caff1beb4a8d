"""Clinical constraints per model, kept in data (``clinical_rules.yaml``) rather than code.

A rule says which modalities and body parts a model may see, which DICOM attributes must be
present, the sane ranges of pixel spacing, slice thickness and patient age, and the model's
input requirements. PNG and JPEG carry no DICOM attributes: a rule says whether such formats
are allowed at all and which modality to assume for them.

Patient age (from PatientAge, or PatientBirthDate and StudyDate) is read only to compare it
with the range; it never appears in a reason, a verdict or any returned value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset

from schemas.body_part import recognised_body_part
from schemas.errors import ErrorCode, RadstreamError, error_for
from schemas.events import ImageFormat, ImageGeometry, ValidatorVerdict
from schemas.modality import recognised_modality
from streams.validation.decoding import element_value, optional_float

_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
Code = Annotated[str, Field(pattern=r"^[A-Z0-9_ ]{1,16}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Range(_Strict):
    """An inclusive numeric range; either end may be open."""

    min: float | None = None
    max: float | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _ints_are_numbers(cls, value: Any) -> Any:
        """YAML writes 1 for 1.0; accept ints as numbers, refuse strings and booleans."""
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("range min exceeds max")
        return self

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the range."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class ModelInput(_Strict):
    """What a model needs from its input image."""

    min_width: int = Field(1, ge=1)
    min_height: int = Field(1, ge=1)
    samples_per_pixel: tuple[int, ...] = Field((1, 3), min_length=1)

    @field_validator("samples_per_pixel", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class ClinicalRule(_Strict):
    """The constraints one model (or the default) puts on an image."""

    allowed_formats: tuple[ImageFormat, ...] = (ImageFormat.DICOM,)
    assumed_modality_for_non_dicom: Code | None = Field(
        None, description="modality assumed for PNG/JPEG; None uses the event's modality hint"
    )
    allowed_modalities: tuple[Code, ...] | None = None
    allowed_body_parts: tuple[Code, ...] | None = None
    required_attributes: tuple[str, ...] = ()
    pixel_spacing_mm: Range | None = None
    slice_thickness_mm: Range | None = None
    patient_age_years: Range | None = None
    require_patient_age: bool = False
    model_input: ModelInput = ModelInput()

    @field_validator(
        "allowed_formats",
        "allowed_modalities",
        "allowed_body_parts",
        "required_attributes",
        mode="before",
    )
    @classmethod
    def _lists_to_tuples(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(ImageFormat(v) if cls._is_format(v) else v for v in value)
        return value

    @staticmethod
    def _is_format(value: Any) -> bool:
        return isinstance(value, str) and value in {f.value for f in ImageFormat}

    @field_validator("allowed_modalities", "assumed_modality_for_non_dicom")
    @classmethod
    def _defined_modalities(
        cls, value: tuple[str, ...] | str | None
    ) -> tuple[str, ...] | str | None:
        """A rule names only modalities an image can have (schemas/modality.py)."""
        named = (value,) if isinstance(value, str) else value or ()
        unknown = [code for code in named if recognised_modality(code) != code]
        if unknown:
            raise ValueError(
                "not DICOM modality defined terms (CID 33): " + ", ".join(sorted(unknown))
            )
        return value

    @field_validator("allowed_body_parts")
    @classmethod
    def _defined_body_parts(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """A rule names only body parts a sender's value can be (schemas/body_part.py)."""
        unknown = [part for part in value or () if recognised_body_part(part) != part]
        if unknown:
            raise ValueError(
                "not DICOM Body Part Examined defined terms (PS3.16 Annex L): "
                + ", ".join(sorted(unknown))
            )
        return value

    @field_validator("required_attributes")
    @classmethod
    def _known_keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [keyword for keyword in value if keyword not in keyword_dict]
        if unknown:
            raise ValueError(f"unknown DICOM keywords: {', '.join(sorted(unknown))}")
        return value


class ClinicalRules(_Strict):
    """The default rule and the per-model rules (keyed by model name or ``name@version``)."""

    version: int = Field(1, ge=1, le=1)
    default: ClinicalRule = ClinicalRule()
    models: dict[str, ClinicalRule] = {}

    def rule_for(self, model_id: str) -> ClinicalRule:
        """The rule of ``model_id``: exact id, then its name without version, then default."""
        name = model_id.partition("@")[0]
        return self.models.get(model_id) or self.models.get(name) or self.default


def load_clinical_rules(path: Path) -> ClinicalRules:
    """Load and strictly validate the clinical rules file (YAML).

    Raises:
        ValueError: the file is not valid YAML or does not match the rules schema.
        OSError: the file cannot be read.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError("clinical rules file must hold a mapping")  # noqa: TRY004
    return ClinicalRules.model_validate(document)


@dataclass(frozen=True, slots=True)
class ClinicalFacts:
    """What the rules look at, taken from the header (age stays inside this object)."""

    format: ImageFormat
    modality: str | None
    body_part: str | None
    """A DICOM defined term (schemas/body_part.py), or ``None``."""
    dataset: Dataset | None
    body_part_unrecognised: bool = False
    """BodyPartExamined held a code-shaped value that is no defined term (kept out of sight)."""


def check_clinical_rules(
    facts: ClinicalFacts,
    geometry: ImageGeometry,
    rules: ClinicalRules,
    model_ids: Sequence[str],
) -> list[ValidatorVerdict]:
    """Apply the rule of every requested model (or the default); raise on the first miss."""
    verdicts: list[ValidatorVerdict] = []
    for model_id in model_ids or ("default",):
        rule = rules.default if model_id == "default" else rules.rule_for(model_id)
        _check_rule(rule, facts, geometry, model_id)
        verdicts.append(ValidatorVerdict(check=f"clinical:{model_id}"[:64], passed=True))
    return verdicts


def _check_rule(
    rule: ClinicalRule, facts: ClinicalFacts, geometry: ImageGeometry, model_id: str
) -> None:
    where = f"for model {model_id}"
    if facts.format not in rule.allowed_formats:
        raise error_for(
            ErrorCode.MODEL_INPUT_INCOMPATIBLE, f"{facts.format.value} input not allowed {where}"
        )
    modality = facts.modality
    if facts.dataset is None and rule.assumed_modality_for_non_dicom is not None:
        modality = rule.assumed_modality_for_non_dicom
    if rule.allowed_modalities is not None and modality not in rule.allowed_modalities:
        raise error_for(
            ErrorCode.CLINICAL_MODALITY_NOT_ALLOWED, f"modality {modality} not allowed {where}"
        )
    if facts.dataset is not None:
        _check_dicom_attributes(rule, facts, facts.dataset, where)
    _check_model_input(rule.model_input, geometry, where)


def _check_dicom_attributes(
    rule: ClinicalRule, facts: ClinicalFacts, dataset: Dataset, where: str
) -> None:
    for keyword in rule.required_attributes:
        if _absent(dataset, keyword):
            raise error_for(ErrorCode.CLINICAL_ATTRIBUTE_MISSING, f"{keyword} missing {where}")
    if rule.allowed_body_parts is not None and (
        facts.body_part_unrecognised
        or (facts.body_part is not None and facts.body_part not in rule.allowed_body_parts)
    ):
        raise error_for(ErrorCode.CLINICAL_BODY_PART_NOT_ALLOWED, f"body part not allowed {where}")
    if rule.pixel_spacing_mm is not None:
        spacing = pixel_spacing(dataset)
        if spacing is None or not all(
            value > 0 and rule.pixel_spacing_mm.contains(value) for value in spacing
        ):
            raise error_for(
                ErrorCode.CLINICAL_PIXEL_SPACING_INVALID,
                f"pixel spacing missing or outside the allowed range {where}",
            )
    thickness = optional_float(dataset, "SliceThickness")
    if (
        rule.slice_thickness_mm is not None
        and thickness is not None
        and (thickness <= 0 or not rule.slice_thickness_mm.contains(thickness))
    ):
        raise error_for(
            ErrorCode.CLINICAL_SLICE_THICKNESS_INVALID,
            f"slice thickness outside the allowed range {where}",
        )
    if rule.patient_age_years is not None:
        age = _patient_age_years(dataset)
        if age is None and rule.require_patient_age:
            raise error_for(ErrorCode.CLINICAL_ATTRIBUTE_MISSING, f"patient age unknown {where}")
        if age is not None and not rule.patient_age_years.contains(age):
            # Neither the age nor the range is reported: together they would disclose it.
            raise error_for(
                ErrorCode.CLINICAL_PATIENT_AGE_OUT_OF_RANGE,
                f"patient age outside the allowed range {where}",
            )


def _check_model_input(requirement: ModelInput, geometry: ImageGeometry, where: str) -> None:
    if geometry.width < requirement.min_width or geometry.height < requirement.min_height:
        raise error_for(
            ErrorCode.MODEL_INPUT_INCOMPATIBLE,
            f"{geometry.width}x{geometry.height} below the model minimum "
            f"{requirement.min_width}x{requirement.min_height} {where}",
        )
    if geometry.samples_per_pixel not in requirement.samples_per_pixel:
        raise error_for(
            ErrorCode.MODEL_INPUT_INCOMPATIBLE,
            f"{geometry.samples_per_pixel} samples per pixel not accepted {where}",
        )


def _absent(dataset: Dataset, keyword: str) -> bool:
    try:
        value = element_value(dataset, keyword)
    except RadstreamError:
        return True
    return value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0)


def pixel_spacing(dataset: Dataset) -> tuple[float, float] | None:
    """PixelSpacing, else ImagerPixelSpacing, as (row, column) millimetres; None if unusable."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = element_value(dataset, keyword)
        except RadstreamError:
            return None
        if value is None:
            continue
        try:
            row, column = (float(part) for part in value)
        except (TypeError, ValueError):
            return None
        return row, column
    return None


def _patient_age_years(dataset: Dataset) -> float | None:
    """Age in years from PatientAge, else from PatientBirthDate and StudyDate; None if unknown."""
    try:
        age = str(element_value(dataset, "PatientAge") or "").strip().upper()
        match = _AGE.match(age)
        if match:
            return int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)] / 365.25
        birth = _parse_date(element_value(dataset, "PatientBirthDate"))
        study = _parse_date(element_value(dataset, "StudyDate"))
    except RadstreamError:
        return None
    if birth is None or study is None or study < birth:
        return None
    return (study - birth).days / 365.25


def _parse_date(value: Any) -> date | None:
    match = _DATE.match(str(value or "").strip())
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
