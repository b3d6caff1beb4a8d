"""Body Part Examined: only DICOM defined terms are carried; code-shaped free text is not."""

from __future__ import annotations

import json
import pkgutil

import pytest
from pydantic import ValidationError

from schemas.body_part import DICOM_BODY_PARTS, recognised_body_part
from schemas.events import ImageFormat, ImageGeometry

# A surname typed into BodyPartExamined: upper case, short, exactly the shape of a code string.
NAME_AS_BODY_PART = "CANARYDOE"


def geometry(body_part: str | None) -> ImageGeometry:
    """An image's geometry with ``body_part`` as a sender gave it."""
    return ImageGeometry(
        format=ImageFormat.DICOM, width=64, height=64, dtype="uint16", body_part=body_part
    )


class TestDefinedTerms:
    def test_the_terms_are_highdicoms_copy_of_annex_l(self) -> None:
        """The list is PS3.16 Annex L Table L-1 as highdicom transcribes it; an upgrade says so."""
        # highdicom's private data file: read here only to catch drift, never at run time.
        data = pkgutil.get_data("highdicom", "_standard/anatomic_regions.json")
        assert data is not None
        assert set(json.loads(data)) == DICOM_BODY_PARTS

    def test_every_term_has_the_code_string_shape(self) -> None:
        """Each term is a valid CS value (upper case, digits, at most 16 characters)."""
        assert all(
            term.isalnum() and term.isupper() and len(term) <= 16 for term in DICOM_BODY_PARTS
        )


class TestRecognisedBodyPart:
    @pytest.mark.parametrize(
        "term", ["CHEST", "HEAD", "ABDOMEN", "CSPINE", "TSPINE", "LSPINE", "BREAST", "KNEE"]
    )
    def test_defined_terms_are_recognised(self, term: str) -> None:
        """The terms radiology routes by are defined terms."""
        assert recognised_body_part(term) == term

    @pytest.mark.parametrize(("value", "term"), [("chest", "CHEST"), (" Knee ", "KNEE")])
    def test_case_and_blanks_are_forgiven(self, value: str, term: str) -> None:
        """A term in lower case or padded (CS values are padded on the wire) reads as the term."""
        assert recognised_body_part(value) == term

    @pytest.mark.parametrize("value", [NAME_AS_BODY_PART, "DOE", "CHEST PA", "", "   ", None])
    def test_anything_else_is_no_body_part(self, value: str | None) -> None:
        """Free text, a name in code shape, blanks and nothing all read as no body part."""
        assert recognised_body_part(value) is None


class TestContracts:
    def test_geometry_reads_a_name_as_no_body_part(self) -> None:
        """An event is not refused for it: the body part is dropped, and the name with it."""
        event = geometry(NAME_AS_BODY_PART)
        assert event.body_part is None
        assert NAME_AS_BODY_PART not in event.model_dump_json()

    def test_geometry_keeps_a_defined_term_in_upper_case(self) -> None:
        """A term survives, normalised to the form rules and readers compare."""
        assert geometry("chest").body_part == "CHEST"

    def test_the_contract_length_still_applies(self) -> None:
        """The field stays an optional string of at most 32 characters, as before."""
        with pytest.raises(ValidationError):
            geometry("X" * 33)
