"""Modality: only DICOM defined terms are carried; free text that looks like a code is not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.api import ImageReference
from schemas.events import ImageArrived
from schemas.modality import (
    DICOM_MODALITIES,
    RETIRED_MODALITIES,
    defined_modality,
    recognised_modality,
)

# A surname typed into Modality: upper case, short, exactly the shape of a code string.
NAME_AS_MODALITY = "DOEJANE"


class TestRecognisedModality:
    @pytest.mark.parametrize("code", ["CT", "MR", "CR", "DX", "MG", "US", "NM", "PT", "XA", "OT"])
    def test_current_defined_terms_are_recognised(self, code: str) -> None:
        """The terms radiology routes by come from pydicom's CID 33."""
        assert recognised_modality(code) == code

    @pytest.mark.parametrize("code", sorted(RETIRED_MODALITIES))
    def test_retired_terms_still_count(self, code: str) -> None:
        """Old archives still send retired terms (ST for SPECT, ...)."""
        assert code in DICOM_MODALITIES
        assert recognised_modality(code) == code

    def test_blanks_around_a_term_are_removed(self) -> None:
        """CS values are padded to an even length on the wire."""
        assert recognised_modality(" CT ") == "CT"

    @pytest.mark.parametrize("value", [NAME_AS_MODALITY, "ct", "C T", "", "SMITH1", None])
    def test_anything_else_is_no_modality(self, value: str | None) -> None:
        """Free text, lower case, blanks and nothing all read as no modality."""
        assert recognised_modality(value) is None


class TestDefinedModality:
    def test_a_defined_term_passes(self) -> None:
        assert defined_modality("MR") == "MR"

    def test_free_text_is_refused_without_its_value(self) -> None:
        """What a person typed is refused, and the reason does not repeat it."""
        with pytest.raises(ValueError, match="not a DICOM modality defined term") as caught:
            defined_modality(NAME_AS_MODALITY)
        assert NAME_AS_MODALITY not in str(caught.value)


class TestContracts:
    def test_an_arrival_reads_free_text_as_no_modality(self) -> None:
        """A router's arrival is not refused for it: the image is still processed, unrouted."""
        arrival = ImageArrived(
            source="pacs-1", image_uri="file:///data/x.dcm", modality=NAME_AS_MODALITY
        )
        assert arrival.modality is None
        assert NAME_AS_MODALITY not in arrival.model_dump_json()

    def test_an_arrival_keeps_a_defined_term(self) -> None:
        arrival = ImageArrived(source="pacs-1", image_uri="file:///data/x.dcm", modality="CT")
        assert arrival.modality == "CT"

    def test_the_contract_pattern_still_applies(self) -> None:
        """Lower case or punctuation is refused by the contract, as before."""
        with pytest.raises(ValidationError):
            ImageArrived(source="pacs-1", image_uri="file:///data/x.dcm", modality="Doe^Jane")

    def test_an_api_submission_refuses_free_text(self) -> None:
        """The API answers REQUEST_INVALID (the route test pins the status and the body)."""
        with pytest.raises(ValidationError) as caught:
            ImageReference(
                source="ward-7", image_uri="file:///data/x.dcm", modality=NAME_AS_MODALITY
            )
        assert NAME_AS_MODALITY not in str(caught.value.errors(include_input=False))
