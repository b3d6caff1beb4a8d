"""The PHI attribute list agrees with the DICOM data dictionary and covers the brief's names."""

from __future__ import annotations

import pytest
from pydicom.datadict import dictionary_description, keyword_for_tag

from observability.phi_attributes import BIRTH_DATE_KEYWORDS, PHI_ATTRIBUTES, phi_attribute

pytestmark = pytest.mark.requirement("RS-LOG-02")


class TestPhiAttributes:
    def test_tags_match_keywords_and_names(self) -> None:
        """Every entry's tag has that keyword and name in pydicom's dictionary."""
        mismatched = [
            attr
            for attr in PHI_ATTRIBUTES
            if keyword_for_tag(attr.tag) != attr.keyword
            or dictionary_description(attr.tag) != attr.name
        ]
        assert mismatched == []

    def test_unknown_keyword_is_refused(self) -> None:
        """A keyword the DICOM dictionary does not know fails at import, not silently unmasked."""
        with pytest.raises(ValueError, match="is not a DICOM keyword"):
            phi_attribute("PatientNickname")

    def test_required_person_attributes_are_listed(self) -> None:
        """The person attributes the issue names explicitly are all present."""
        required = {
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "OtherPatientIDs",
            "OtherPatientNames",
            "PatientAddress",
            "PatientTelephoneNumbers",
            "ReferringPhysicianName",
            "PerformingPhysicianName",
            "NameOfPhysiciansReadingStudy",
            "OperatorsName",
            "InstitutionAddress",
            "AccessionNumber",
            "PatientComments",
        }
        assert required <= {attr.keyword for attr in PHI_ATTRIBUTES}

    def test_no_uid_is_treated_as_phi(self) -> None:
        """UIDs stay usable as routing keys: none is on the list."""
        assert [a.keyword for a in PHI_ATTRIBUTES if a.keyword.endswith("UID")] == []

    def test_keywords_are_unique(self) -> None:
        """No attribute is listed twice."""
        keywords = [attr.keyword for attr in PHI_ATTRIBUTES]
        assert len(keywords) == len(set(keywords))

    def test_birth_keywords_are_listed_attributes(self) -> None:
        """Every birth-date keyword is itself a listed PHI attribute."""
        listed = {attr.keyword for attr in PHI_ATTRIBUTES}
        assert listed.issuperset(BIRTH_DATE_KEYWORDS)
