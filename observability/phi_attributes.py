"""DICOM attributes that identify a person: their values are always masked in logs.

The list follows DICOM PS3.15 Annex E (Table E.1-1, Basic Application Level Confidentiality
Profile): the attributes that name, locate, contact or describe a patient or a person involved in
their care, plus the free-text comments that routinely carry such details. UIDs are deliberately
absent: radstream's events carry Study/Series/SOP Instance UIDs as routing keys, and the UID
format carries no patient data by itself. The list names keywords only: tags and names come from
pydicom's data dictionary, so they cannot disagree with it.
"""

from __future__ import annotations

from typing import NamedTuple

from pydicom.datadict import dictionary_description, tag_for_keyword


class PhiAttribute(NamedTuple):
    """One DICOM attribute whose value identifies a person."""

    keyword: str
    tag: int
    name: str


def phi_attribute(keyword: str) -> PhiAttribute:
    """The attribute of a DICOM keyword, its tag and name as pydicom's data dictionary has them."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword!r} is not a DICOM keyword")
    return PhiAttribute(keyword, tag, dictionary_description(tag))


PHI_ATTRIBUTES: tuple[PhiAttribute, ...] = tuple(
    phi_attribute(keyword)
    for keyword in (
        "AccessionNumber",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "ReferringPhysicianName",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "ReferringPhysicianIdentificationSequence",
        "ConsultingPhysicianName",
        "ConsultingPhysicianIdentificationSequence",
        "StationName",
        "InstitutionalDepartmentName",
        "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence",
        "PerformingPhysicianName",
        "PerformingPhysicianIdentificationSequence",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansReadingStudyIdentificationSequence",
        "OperatorsName",
        "OperatorIdentificationSequence",
        "AdmittingDiagnosesDescription",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "TypeOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientBirthDateInAlternativeCalendar",
        "PatientDeathDateInAlternativeCalendar",
        "PatientSex",
        "PatientInsurancePlanCodeSequence",
        "PatientPrimaryLanguageCodeSequence",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "PatientBirthName",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "PatientAddress",
        "PatientMotherBirthName",
        "MilitaryRank",
        "BranchOfService",
        "MedicalRecordLocator",
        "ReferencedPatientPhotoSequence",
        "MedicalAlerts",
        "Allergies",
        "CountryOfResidence",
        "RegionOfResidence",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "EthnicGroup",
        "Occupation",
        "SmokingStatus",
        "AdditionalPatientHistory",
        "PregnancyStatus",
        "LastMenstrualDate",
        "PatientReligiousPreference",
        "PatientSexNeutered",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        "PatientComments",
        "StudyID",
        "ImageComments",
        "RequestingPhysicianIdentificationSequence",
        "RequestingPhysician",
        "RequestingService",
        "StudyComments",
        "AdmissionID",
        "IssuerOfAdmissionIDSequence",
        "ServiceEpisodeID",
        "SpecialNeeds",
        "CurrentPatientLocation",
        "PatientInstitutionResidence",
        "PatientState",
        "ScheduledPerformingPhysicianName",
        "ScheduledPerformingPhysicianIdentificationSequence",
        "ScheduledStationName",
        "PerformedStationName",
        "PerformedLocation",
        "NamesOfIntendedRecipientsOfResults",
        "PatientTransportArrangements",
        "PersonAddress",
        "PersonTelephoneNumbers",
        "OrderEnteredBy",
        "OrderEntererLocation",
        "OrderCallbackPhoneNumber",
        "HumanPerformerOrganization",
        "HumanPerformerName",
        "VerifyingObserverName",
        "PersonName",
        "ContentCreatorName",
        "ReviewerName",
        "InterpretationRecorder",
        "InterpretationTranscriber",
        "InterpretationAuthor",
        "DistributionName",
        "DistributionAddress",
        "PhysicianApprovingInterpretation",
        "PersonIdentificationCodeSequence",
        "VerifyingOrganization",
    )
)

# Keys that hold a date of birth: their values become [REDACTED_DOB] rather than [REDACTED_PHI].
BIRTH_DATE_KEYWORDS: frozenset[str] = frozenset(
    {"PatientBirthDate", "PatientBirthDateInAlternativeCalendar"}
)
