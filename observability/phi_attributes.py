"""DICOM attributes that identify a person: their values are always masked in logs.

The list follows DICOM PS3.15 Annex E (Table E.1-1, Basic Application Level Confidentiality
Profile): the attributes that name, locate, contact or describe a patient or a person involved in
their care, plus the free-text comments that routinely carry such details. UIDs are deliberately
absent: radstream's events carry Study/Series/SOP Instance UIDs as routing keys, and the UID
format carries no patient data by itself. Tags were checked against pydicom's data dictionary
(``tests/unit/observability/test_phi_attributes_dictionary.py`` keeps them honest).
"""

from __future__ import annotations

from typing import NamedTuple


class PhiAttribute(NamedTuple):
    """One DICOM attribute whose value identifies a person."""

    keyword: str
    tag: int
    name: str


PHI_ATTRIBUTES: tuple[PhiAttribute, ...] = (
    PhiAttribute("AccessionNumber", 0x00080050, "Accession Number"),
    PhiAttribute("InstitutionName", 0x00080080, "Institution Name"),
    PhiAttribute("InstitutionAddress", 0x00080081, "Institution Address"),
    PhiAttribute("InstitutionCodeSequence", 0x00080082, "Institution Code Sequence"),
    PhiAttribute("ReferringPhysicianName", 0x00080090, "Referring Physician's Name"),
    PhiAttribute("ReferringPhysicianAddress", 0x00080092, "Referring Physician's Address"),
    PhiAttribute(
        "ReferringPhysicianTelephoneNumbers", 0x00080094, "Referring Physician's Telephone Numbers"
    ),
    PhiAttribute(
        "ReferringPhysicianIdentificationSequence",
        0x00080096,
        "Referring Physician Identification Sequence",
    ),
    PhiAttribute("ConsultingPhysicianName", 0x0008009C, "Consulting Physician's Name"),
    PhiAttribute(
        "ConsultingPhysicianIdentificationSequence",
        0x0008009D,
        "Consulting Physician Identification Sequence",
    ),
    PhiAttribute("StationName", 0x00081010, "Station Name"),
    PhiAttribute("InstitutionalDepartmentName", 0x00081040, "Institutional Department Name"),
    PhiAttribute("PhysiciansOfRecord", 0x00081048, "Physician(s) of Record"),
    PhiAttribute(
        "PhysiciansOfRecordIdentificationSequence",
        0x00081049,
        "Physician(s) of Record Identification Sequence",
    ),
    PhiAttribute("PerformingPhysicianName", 0x00081050, "Performing Physician's Name"),
    PhiAttribute(
        "PerformingPhysicianIdentificationSequence",
        0x00081052,
        "Performing Physician Identification Sequence",
    ),
    PhiAttribute("NameOfPhysiciansReadingStudy", 0x00081060, "Name of Physician(s) Reading Study"),
    PhiAttribute(
        "PhysiciansReadingStudyIdentificationSequence",
        0x00081062,
        "Physician(s) Reading Study Identification Sequence",
    ),
    PhiAttribute("OperatorsName", 0x00081070, "Operators' Name"),
    PhiAttribute("OperatorIdentificationSequence", 0x00081072, "Operator Identification Sequence"),
    PhiAttribute("AdmittingDiagnosesDescription", 0x00081080, "Admitting Diagnoses Description"),
    PhiAttribute("PatientName", 0x00100010, "Patient's Name"),
    PhiAttribute("PatientID", 0x00100020, "Patient ID"),
    PhiAttribute("IssuerOfPatientID", 0x00100021, "Issuer of Patient ID"),
    PhiAttribute("TypeOfPatientID", 0x00100022, "Type of Patient ID"),
    PhiAttribute(
        "IssuerOfPatientIDQualifiersSequence",
        0x00100024,
        "Issuer of Patient ID Qualifiers Sequence",
    ),
    PhiAttribute("PatientBirthDate", 0x00100030, "Patient's Birth Date"),
    PhiAttribute("PatientBirthTime", 0x00100032, "Patient's Birth Time"),
    PhiAttribute(
        "PatientBirthDateInAlternativeCalendar",
        0x00100033,
        "Patient's Birth Date in Alternative Calendar",
    ),
    PhiAttribute(
        "PatientDeathDateInAlternativeCalendar",
        0x00100034,
        "Patient's Death Date in Alternative Calendar",
    ),
    PhiAttribute("PatientSex", 0x00100040, "Patient's Sex"),
    PhiAttribute(
        "PatientInsurancePlanCodeSequence", 0x00100050, "Patient's Insurance Plan Code Sequence"
    ),
    PhiAttribute(
        "PatientPrimaryLanguageCodeSequence", 0x00100101, "Patient's Primary Language Code Sequence"
    ),
    PhiAttribute("OtherPatientIDs", 0x00101000, "Other Patient IDs"),
    PhiAttribute("OtherPatientNames", 0x00101001, "Other Patient Names"),
    PhiAttribute("OtherPatientIDsSequence", 0x00101002, "Other Patient IDs Sequence"),
    PhiAttribute("PatientBirthName", 0x00101005, "Patient's Birth Name"),
    PhiAttribute("PatientAge", 0x00101010, "Patient's Age"),
    PhiAttribute("PatientSize", 0x00101020, "Patient's Size"),
    PhiAttribute("PatientWeight", 0x00101030, "Patient's Weight"),
    PhiAttribute("PatientAddress", 0x00101040, "Patient's Address"),
    PhiAttribute("PatientMotherBirthName", 0x00101060, "Patient's Mother's Birth Name"),
    PhiAttribute("MilitaryRank", 0x00101080, "Military Rank"),
    PhiAttribute("BranchOfService", 0x00101081, "Branch of Service"),
    PhiAttribute("MedicalRecordLocator", 0x00101090, "Medical Record Locator"),
    PhiAttribute("ReferencedPatientPhotoSequence", 0x00101100, "Referenced Patient Photo Sequence"),
    PhiAttribute("MedicalAlerts", 0x00102000, "Medical Alerts"),
    PhiAttribute("Allergies", 0x00102110, "Allergies"),
    PhiAttribute("CountryOfResidence", 0x00102150, "Country of Residence"),
    PhiAttribute("RegionOfResidence", 0x00102152, "Region of Residence"),
    PhiAttribute("PatientTelephoneNumbers", 0x00102154, "Patient's Telephone Numbers"),
    PhiAttribute("PatientTelecomInformation", 0x00102155, "Patient's Telecom Information"),
    PhiAttribute("EthnicGroup", 0x00102160, "Ethnic Group"),
    PhiAttribute("Occupation", 0x00102180, "Occupation"),
    PhiAttribute("SmokingStatus", 0x001021A0, "Smoking Status"),
    PhiAttribute("AdditionalPatientHistory", 0x001021B0, "Additional Patient History"),
    PhiAttribute("PregnancyStatus", 0x001021C0, "Pregnancy Status"),
    PhiAttribute("LastMenstrualDate", 0x001021D0, "Last Menstrual Date"),
    PhiAttribute("PatientReligiousPreference", 0x001021F0, "Patient's Religious Preference"),
    PhiAttribute("PatientSexNeutered", 0x00102203, "Patient's Sex Neutered"),
    PhiAttribute("ResponsiblePerson", 0x00102297, "Responsible Person"),
    PhiAttribute("ResponsibleOrganization", 0x00102299, "Responsible Organization"),
    PhiAttribute("PatientComments", 0x00104000, "Patient Comments"),
    PhiAttribute("StudyID", 0x00200010, "Study ID"),
    PhiAttribute("ImageComments", 0x00204000, "Image Comments"),
    PhiAttribute(
        "RequestingPhysicianIdentificationSequence",
        0x00321031,
        "Requesting Physician Identification Sequence",
    ),
    PhiAttribute("RequestingPhysician", 0x00321032, "Requesting Physician"),
    PhiAttribute("RequestingService", 0x00321033, "Requesting Service"),
    PhiAttribute("StudyComments", 0x00324000, "Study Comments"),
    PhiAttribute("AdmissionID", 0x00380010, "Admission ID"),
    PhiAttribute("IssuerOfAdmissionIDSequence", 0x00380014, "Issuer of Admission ID Sequence"),
    PhiAttribute("ServiceEpisodeID", 0x00380060, "Service Episode ID"),
    PhiAttribute("SpecialNeeds", 0x00380050, "Special Needs"),
    PhiAttribute("CurrentPatientLocation", 0x00380300, "Current Patient Location"),
    PhiAttribute("PatientInstitutionResidence", 0x00380400, "Patient's Institution Residence"),
    PhiAttribute("PatientState", 0x00380500, "Patient State"),
    PhiAttribute(
        "ScheduledPerformingPhysicianName", 0x00400006, "Scheduled Performing Physician's Name"
    ),
    PhiAttribute(
        "ScheduledPerformingPhysicianIdentificationSequence",
        0x0040000B,
        "Scheduled Performing Physician Identification Sequence",
    ),
    PhiAttribute("ScheduledStationName", 0x00400010, "Scheduled Station Name"),
    PhiAttribute("PerformedStationName", 0x00400242, "Performed Station Name"),
    PhiAttribute("PerformedLocation", 0x00400243, "Performed Location"),
    PhiAttribute(
        "NamesOfIntendedRecipientsOfResults", 0x00401010, "Names of Intended Recipients of Results"
    ),
    PhiAttribute("PatientTransportArrangements", 0x00401004, "Patient Transport Arrangements"),
    PhiAttribute("PersonAddress", 0x00401102, "Person's Address"),
    PhiAttribute("PersonTelephoneNumbers", 0x00401103, "Person's Telephone Numbers"),
    PhiAttribute("OrderEnteredBy", 0x00402008, "Order Entered By"),
    PhiAttribute("OrderEntererLocation", 0x00402009, "Order Enterer's Location"),
    PhiAttribute("OrderCallbackPhoneNumber", 0x00402010, "Order Callback Phone Number"),
    PhiAttribute("HumanPerformerOrganization", 0x00404036, "Human Performer's Organization"),
    PhiAttribute("HumanPerformerName", 0x00404037, "Human Performer's Name"),
    PhiAttribute("VerifyingObserverName", 0x0040A075, "Verifying Observer Name"),
    PhiAttribute("PersonName", 0x0040A123, "Person Name"),
    PhiAttribute("ContentCreatorName", 0x00700084, "Content Creator's Name"),
    PhiAttribute("ReviewerName", 0x300E0008, "Reviewer Name"),
    PhiAttribute("InterpretationRecorder", 0x40080102, "Interpretation Recorder"),
    PhiAttribute("InterpretationTranscriber", 0x4008010A, "Interpretation Transcriber"),
    PhiAttribute("InterpretationAuthor", 0x4008010C, "Interpretation Author"),
    PhiAttribute("DistributionName", 0x40080119, "Distribution Name"),
    PhiAttribute("DistributionAddress", 0x4008011A, "Distribution Address"),
    PhiAttribute(
        "PhysicianApprovingInterpretation", 0x40080114, "Physician Approving Interpretation"
    ),
    PhiAttribute(
        "PersonIdentificationCodeSequence", 0x00401101, "Person Identification Code Sequence"
    ),
    PhiAttribute("VerifyingOrganization", 0x0040A027, "Verifying Organization"),
)

# Keys that hold a date of birth: their values become [REDACTED_DOB] rather than [REDACTED_PHI].
BIRTH_DATE_KEYWORDS: frozenset[str] = frozenset(
    {"PatientBirthDate", "PatientBirthDateInAlternativeCalendar"}
)
