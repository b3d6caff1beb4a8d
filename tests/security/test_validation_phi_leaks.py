"""No patient name, ID or birth date reaches any validation output (pydicom corpus + samples)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread

from schemas.settings import ValidationSettings
from streams.validation import ClinicalRules, validate_image
from tests.unit.validation.support import (
    OPEN_RULES,
    PERMISSIVE_LIMITS,
    SAMPLES,
    corpus_files,
    phi_values,
)

pytestmark = pytest.mark.requirement("RS-G-01", "RS-G-02")

_PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate")
# Rules that make most images fail a clinical check, so rejection reasons are exercised too.
_STRICT_RULES = ClinicalRules.model_validate(
    {
        "default": {
            "allowed_formats": ["dicom"],
            "allowed_modalities": ["XA"],
            "required_attributes": ["PatientName", "PatientID"],
            "patient_age_years": {"min": 200},
        }
    }
)


def _corpus_phi() -> set[str]:
    """Every PatientName/PatientID/PatientBirthDate value in pydicom's corpus (length >= 3)."""
    values: set[str] = set()
    for path in corpus_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = dcmread(path, stop_before_pixels=True, force=True)
                found = [str(dataset.get(keyword, "") or "") for keyword in _PHI_KEYWORDS]
        except Exception:  # noqa: BLE001, S112 - non-DICOM files hold no identifiers
            continue
        values.update(value.strip() for value in found if len(value.strip()) >= 3)
    return values


def _leaks(secrets: set[str] | list[str], text: str) -> list[str]:
    """Identifiers found in ``text`` as whole tokens (so ID "204" does not match "39204")."""
    return [
        secret
        for secret in secrets
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", text)
    ]


def _outputs(paths: list[Path], limits: ValidationSettings, rules: ClinicalRules) -> list[str]:
    texts = []
    for path in paths:
        for rule_set in (OPEN_RULES, rules):
            outcome = validate_image(path.read_bytes(), limits=limits, rules=rule_set)
            texts.append(outcome.model_dump_json())
    return texts


def test_corpus_identifiers_were_found() -> None:
    """The scan has something to look for (the corpus carries fake identifiers)."""
    assert {"CompressedSamples^CT1", "1CT1"} <= _corpus_phi()


def test_manifest_lists_sample_identifiers() -> None:
    """The samples' PHI manifest lists the CT's name, ID and fake birth date."""
    assert {"CompressedSamples^CT1", "1CT1", "19700101"} <= set(phi_values())


@pytest.mark.parametrize("rules", [OPEN_RULES, _STRICT_RULES], ids=["open", "strict"])
def test_no_corpus_identifier_in_outputs(rules: ClinicalRules) -> None:
    """Accepted and rejected outcomes of the whole corpus, as JSON, contain no identifier."""
    secrets = _corpus_phi()
    for text in _outputs(corpus_files(), PERMISSIVE_LIMITS, rules):
        assert not _leaks(secrets, text), json.loads(text).get("error_code")


def test_no_sample_identifier_in_outputs() -> None:
    """Outcomes of every bundled sample contain none of the manifest's values."""
    paths = sorted(path for path in SAMPLES.rglob("*") if path.suffix in {".dcm", ".png", ".jpg"})
    secrets = phi_values()
    for text in _outputs(paths, ValidationSettings(), _STRICT_RULES):
        assert not _leaks(secrets, text)


def test_scanner_finds_a_planted_identifier() -> None:
    """The token scan itself detects an identifier inside JSON text (it can fail)."""
    text = json.dumps({"reason": "bad value CompressedSamples^CT1 in header", "size": "39204"})
    assert _leaks({"CompressedSamples^CT1", "204"}, text) == ["CompressedSamples^CT1"]
