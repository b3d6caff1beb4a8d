"""PhiMasker: each masking pattern (hits and near-misses), keys, nesting and safe fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from observability.phi import (
    REDACTED_DOB,
    REDACTED_EMAIL,
    REDACTED_ID,
    REDACTED_IP,
    REDACTED_MRN,
    REDACTED_PHI,
    REDACTED_PHONE,
    REDACTED_SSN,
    TRUNCATED,
    PhiMasker,
    default_masker,
    mask_text,
    mask_value,
    set_default_masker,
)
from schemas.correlation import new_correlation_id
from schemas.errors import ErrorCode
from schemas.events import Stage
from schemas.settings import LoggingSettings

pytestmark = pytest.mark.requirement("RS-LOG-02", "RS-G-01")


@pytest.fixture
def masker() -> PhiMasker:
    """A masker with the default MRN format and IP masking on."""
    return PhiMasker(mask_ip_addresses=True)


class TestEmail:
    @pytest.mark.parametrize(
        "text",
        ["mail john.doe@example.org now", "x <Jane_D+tag@mail.hospital.co.uk>", "a@b.io"],
    )
    def test_addresses_are_masked(self, masker: PhiMasker, text: str) -> None:
        """E-mail addresses become the e-mail marker."""
        masked = masker.mask_text(text)
        assert REDACTED_EMAIL in masked
        assert "@" not in masked

    @pytest.mark.parametrize(
        "text", ["user@localhost", "model chest-xray@1.0.0", "@handle", "a@b", "x@1.2.3"]
    )
    def test_near_misses_are_kept(self, masker: PhiMasker, text: str) -> None:
        """Strings with an @ but no domain with a TLD are not e-mail addresses."""
        assert masker.mask_text(text) == text


class TestPhone:
    @pytest.mark.parametrize(
        "text",
        [
            "call (555) 123-4567",
            "call 555-123-4567.",
            "call 555.123.4567",
            "call +1 555 123 4567",
            "call +44 20 7946 0958",
            "call +49-30-1234567",
            "phone: 5551234567",
            "tel 0044 20 7946 0958",
        ],
    )
    def test_numbers_are_masked(self, masker: PhiMasker, text: str) -> None:
        """Phone numbers in the usual national and international forms are masked."""
        masked = masker.mask_text(text)
        assert REDACTED_PHONE in masked
        assert not any(ch.isdigit() for ch in masked)

    @pytest.mark.parametrize(
        "text",
        [
            "offset 5551234567",
            "took 0.0123 s",
            "at 2026-11-27T22:54:52.123+01:00",
            "uid 1.2.840.113619.2.55.3",
            "size 1234567",
            "version 1.10.100",
            "score 1.5e+10",
        ],
    )
    def test_near_misses_are_kept(self, masker: PhiMasker, text: str) -> None:
        """Offsets, latencies, timestamps, UIDs and versions are not phone numbers."""
        assert masker.mask_text(text) == text


class TestSsn:
    @pytest.mark.parametrize("text", ["ssn 123-45-6789", "id 123 45 6789 here", "SSN: 123456789"])
    def test_ssns_are_masked(self, masker: PhiMasker, text: str) -> None:
        """US social security numbers, dashed, spaced or labelled, are masked."""
        masked = masker.mask_text(text)
        assert REDACTED_SSN in masked
        assert "6789" not in masked

    @pytest.mark.parametrize(
        "text", ["000-12-3456", "666-12-3456", "123-00-4567", "123-45-0000", "123-45-67890"]
    )
    def test_invalid_ssns_are_kept(self, masker: PhiMasker, text: str) -> None:
        """Numbers the SSA never issues, or with too many digits, are left alone."""
        assert REDACTED_SSN not in masker.mask_text(text)


class TestDateOfBirth:
    @pytest.mark.parametrize(
        "text",
        [
            "DOB: 1970-01-31",
            "date of birth 31/01/1970",
            "birth_date=19700131",
            "born on Jan 31, 1970",
            "born 31 January 1970",
            "(0010,0030) Patient's Birth Date DA: '19700131'",
            "PatientBirthDate: 19700131",
        ],
    )
    def test_birth_dates_are_masked(self, masker: PhiMasker, text: str) -> None:
        """A date next to a birth keyword becomes the DOB marker."""
        masked = masker.mask_text(text)
        assert REDACTED_DOB in masked
        assert "1970" not in masked

    @pytest.mark.parametrize(
        "text",
        ["StudyDate 19700131", "completed 2026-11-27", "(0008,0020) Study Date DA: '20261127'"],
    )
    def test_other_dates_are_kept(self, masker: PhiMasker, text: str) -> None:
        """Dates that are not next to a birth keyword are not birth dates."""
        assert masker.mask_text(text) == text


class TestMrn:
    def test_default_format_is_masked(self, masker: PhiMasker) -> None:
        """The default MRN format (MRN plus 5-10 digits) is masked."""
        assert masker.mask_text("record MRN:1234567 seen") == f"record {REDACTED_MRN} seen"

    def test_short_numbers_are_kept(self, masker: PhiMasker) -> None:
        """MRN followed by too few digits does not match the default format."""
        assert masker.mask_text("MRN1234") == "MRN1234"

    def test_site_formats_are_used(self) -> None:
        """A site-configured MRN regex masks that site's record numbers."""
        site = PhiMasker.from_settings(LoggingSettings(mrn_patterns=(r"\bH\d{7}\b",)))
        assert site.mask_text("chart H1234567 opened") == f"chart {REDACTED_MRN} opened"
        assert site.mask_text("chart H123456 opened") == "chart H123456 opened"


class TestIpAddresses:
    @pytest.mark.parametrize(
        "text", ["from 192.168.10.20", "peer 2001:db8::8a2e:370:7334", "via fe80::1", "::1"]
    )
    def test_addresses_are_masked_when_configured(self, masker: PhiMasker, text: str) -> None:
        """IPv4 and IPv6 addresses are masked when the site asks for it."""
        assert REDACTED_IP in masker.mask_text(text)

    def test_addresses_are_kept_by_default(self) -> None:
        """Without the setting IP addresses stay readable for operators."""
        assert PhiMasker().mask_text("from 192.168.10.20") == "from 192.168.10.20"

    @pytest.mark.parametrize(
        "text", ["uid 1.2.840.10008.1.2", "at 22:54:52", "v 1.2.3", "999.1.1.1", "Foo::bar"]
    )
    def test_near_misses_are_kept(self, masker: PhiMasker, text: str) -> None:
        """UIDs, times, versions and C++-style names are not addresses."""
        assert masker.mask_text(text) == text


class TestPersonNames:
    @pytest.mark.parametrize(
        "text", ["seen Doe^John today", "DOE^JANE^MARIE^DR", "Müller^Jürgen", "O'Brien^Anne-Marie"]
    )
    def test_dicom_person_names_are_masked(self, masker: PhiMasker, text: str) -> None:
        """DICOM PN values written Family^Given are masked in free text."""
        masked = masker.mask_text(text)
        assert REDACTED_PHI in masked
        assert "^" not in masked

    @pytest.mark.parametrize("text", ["x^2 + y^2", "regex ^start$", "Doe^", "a ^^ b", "2^10"])
    def test_caret_near_misses_are_kept(self, masker: PhiMasker, text: str) -> None:
        """Carets in maths, anchors or lone components are not person names."""
        assert masker.mask_text(text) == text


class TestAttributeMentions:
    @pytest.mark.parametrize(
        ("text", "leak"),
        [
            ("PatientName=Doe John, next=1", "John"),
            ("patient_id: 'PID-778'", "PID-778"),
            ("Patient's Name: Jane Roe; ok", "Roe"),
            ("OtherPatientIDs=[A1, B2]", "B2"),
            ("(0010,0010) Patient's Name PN: 'Roe Jane'", "Roe"),
            ('(0010,0020) Patient ID LO: "PID-9"', "PID-9"),
            ("(0008,0090) Referring Physician's Name PN: 'House'", "House"),
        ],
    )
    def test_values_of_mentioned_attributes_are_masked(
        self, masker: PhiMasker, text: str, leak: str
    ) -> None:
        """A PHI attribute written as keyword=value or tag ... VR: value loses its value."""
        masked = masker.mask_text(text)
        assert REDACTED_PHI in masked
        assert leak not in masked

    def test_following_fields_survive(self, masker: PhiMasker) -> None:
        """Masking a mentioned value stops at the next field."""
        assert masker.mask_text("PatientID=123 stage=validation") == (
            f"PatientID={REDACTED_PHI} stage=validation"
        )

    def test_non_phi_tags_are_kept(self, masker: PhiMasker) -> None:
        """Tags of non-PHI attributes keep their values."""
        text = "(0008,0060) Modality CS: 'CT'"
        assert masker.mask_text(text) == text


class TestKeys:
    @pytest.mark.parametrize(
        ("key", "marker"),
        [
            ("PatientName", REDACTED_PHI),
            ("patient_name", REDACTED_PHI),
            ("Patient's Name", REDACTED_PHI),
            ("(0010,0020)", REDACTED_PHI),
            ("00100020", REDACTED_PHI),
            ("0x00101000", REDACTED_PHI),
            ("ReferringPhysicianName", REDACTED_PHI),
            ("InstitutionAddress", REDACTED_PHI),
            ("AccessionNumber", REDACTED_PHI),
            ("PatientBirthDate", REDACTED_DOB),
            ("dob", REDACTED_DOB),
            ("birth_date", REDACTED_DOB),
            ("ssn", REDACTED_SSN),
            ("email", REDACTED_EMAIL),
            ("phone_number", REDACTED_PHONE),
            ("mrn", REDACTED_MRN),
            ("client_ip", REDACTED_IP),
        ],
    )
    def test_values_of_phi_keys_are_replaced_whole(
        self, masker: PhiMasker, key: str, marker: str
    ) -> None:
        """Whatever a PHI key holds (text, numbers, structures) is replaced by its marker."""
        for value in ("plain text", 12345, {"Alphabetic": "Doe"}, ["a", "b"]):
            assert masker.mask_mapping({key: value}) == {key: marker}

    def test_integer_tag_keys_are_recognised(self, masker: PhiMasker) -> None:
        """pydicom-style integer tags as keys are recognised too."""
        assert masker.mask_mapping(
            {0x00100010: "Doe", 0x00100030: "19700101", 0x00080060: "CT"}
        ) == {
            0x00100010: REDACTED_PHI,
            0x00100030: REDACTED_DOB,
            0x00080060: "CT",
        }

    def test_none_values_stay_none(self, masker: PhiMasker) -> None:
        """An absent PHI value is not replaced, so logs can say it was missing."""
        assert masker.mask_mapping({"PatientName": None}) == {"PatientName": None}

    def test_ip_keys_are_plain_without_setting(self) -> None:
        """IP-named keys are only masked when IP masking is configured."""
        assert PhiMasker().mask_mapping({"client_ip": "10.0.0.1"}) == {"client_ip": "10.0.0.1"}

    def test_keys_themselves_are_masked(self, masker: PhiMasker) -> None:
        """A key that is itself PHI (an e-mail used as a dict key) is masked."""
        assert masker.mask_mapping({"jane@example.org": 3}) == {REDACTED_EMAIL: 3}

    def test_colliding_masked_keys_keep_both_values(self, masker: PhiMasker) -> None:
        """Two keys masked to the same marker do not overwrite each other."""
        masked = masker.mask_mapping({"a@example.org": 1, "b@example.org": 2})
        assert masked == {REDACTED_EMAIL: 1, f"{REDACTED_EMAIL}#2": 2}

    def test_third_colliding_key_gets_the_next_number(self, masker: PhiMasker) -> None:
        """A third key masked to the same marker is numbered past the taken suffixes."""
        masked = masker.mask_mapping({"a@example.org": 1, "b@example.org": 2, "c@example.org": 3})
        assert masked == {REDACTED_EMAIL: 1, f"{REDACTED_EMAIL}#2": 2, f"{REDACTED_EMAIL}#3": 3}

    def test_keys_that_are_neither_text_nor_tags_name_no_phi(self, masker: PhiMasker) -> None:
        """A float or None key has no marker; its value is still masked as a value."""
        assert masker.key_marker(1.5) is None
        assert masker.mask_mapping({None: "Doe^John"}) == {None: REDACTED_PHI}

    def test_unknown_keys_with_person_names_are_masked(self, masker: PhiMasker) -> None:
        """A DICOM PN value under a key the masker does not know is still masked."""
        assert masker.mask_mapping({"Alphabetic": "Doe^John"}) == {"Alphabetic": REDACTED_PHI}


class TestSafeFields:
    def test_structural_fields_are_untouched(self, masker: PhiMasker) -> None:
        """UIDs, ids, codes, timestamps, latencies, topics and offsets pass unchanged."""
        event_id = uuid.uuid4()
        now = datetime.now(UTC)
        fields = {
            "study_instance_uid": "1.2.840.113619.2.55.3.604688119.969.1268071029.320",
            "sop_instance_uid": "2.25.123456789012345678901234567890",
            "event_id": event_id,
            "correlation_id": new_correlation_id(),
            "dead_letter_id": str(uuid.uuid4()),
            "error_code": ErrorCode.STORAGE_FILE_NOT_FOUND,
            "stage": Stage.VALIDATION,
            "timestamp": now.isoformat(),
            "occurred_at": now,
            "latency_seconds": 0.01234,
            "duration_ms": 5551234567,
            "topic": "radstream.images.arrived",
            "partition": 3,
            "offset": 5551234567,
            "sha256": "ab" * 32,
        }
        assert masker.mask_mapping(fields) == fields

    def test_safe_values_are_untouched_under_unknown_keys(self, masker: PhiMasker) -> None:
        """Structural formats are not mangled even where the key says nothing."""
        fields = {
            "note": "uid 1.2.840.10008.5.1.4.1.1.2 at 2026-11-27T22:54:52.123456Z took 0.25s",
            "ids": [str(uuid.uuid4()), "3f1e2d4c-5b6a-4789-9abc-def012345678"],
            "code": "CHECKSUM_MISMATCH",
        }
        assert masker.mask_mapping(fields) == fields

    def test_safe_keys_do_not_shield_structures(self, masker: PhiMasker) -> None:
        """A container under a safe-looking key is still masked inside."""
        assert masker.mask_mapping({"status": {"PatientID": "P1"}}) == {
            "status": {"PatientID": REDACTED_PHI}
        }


class TestCorrelationIds:
    @pytest.mark.parametrize(
        "value",
        ["MRN-55667788", "Pembertonwhistle-Agatha", "c-1", "AB" * 16, str(uuid.uuid4()), ""],
    )
    def test_values_the_owner_would_not_keep_are_replaced(
        self, masker: PhiMasker, value: str
    ) -> None:
        """A correlation_id that is not canonical is replaced whole, whoever logged it."""
        assert masker.mask_mapping({"correlation_id": value}) == {"correlation_id": REDACTED_ID}

    def test_nested_values_are_checked_too(self, masker: PhiMasker) -> None:
        """The rule holds inside nested data (a logged model or dict)."""
        cid = new_correlation_id()
        logged = {"action": {"correlation_id": "Pembertonwhistle-Agatha"}, "correlation_id": cid}
        assert masker.mask_mapping(logged) == {
            "action": {"correlation_id": REDACTED_ID},
            "correlation_id": cid,
        }

    def test_none_stays_none(self, masker: PhiMasker) -> None:
        """A missing correlation id is logged as missing."""
        assert masker.mask_mapping({"correlation_id": None}) == {"correlation_id": None}


class TestNesting:
    def test_nested_dicts_lists_and_tuples_are_masked(self, masker: PhiMasker) -> None:
        """PHI deep inside mappings, lists and tuples is masked, structure kept."""
        value = {
            "outer": [{"PatientName": "Doe^John"}, ("call 555-123-4567", 7)],
            "set": {"jane@example.org"},
        }
        assert masker.mask_value(value) == {
            "outer": [{"PatientName": REDACTED_PHI}, (f"call {REDACTED_PHONE}", 7)],
            "set": [REDACTED_EMAIL],
        }

    def test_pydantic_models_are_dumped_and_masked(self, masker: PhiMasker) -> None:
        """A pydantic model value is dumped and masked field by field."""

        class Leaky(BaseModel):
            patient_name: str
            modality: str

        assert masker.mask_value(Leaky(patient_name="Roe", modality="CT")) == {
            "patient_name": REDACTED_PHI,
            "modality": "CT",
        }

    def test_bytes_are_never_decoded(self, masker: PhiMasker) -> None:
        """Raw bytes are summarised by length, never printed."""
        assert masker.mask_value(b"DICM Doe^John") == "<13 bytes>"

    def test_unknown_objects_are_stringified_and_masked(self, masker: PhiMasker) -> None:
        """Other objects are turned into masked text."""
        assert (
            masker.mask_value(ValueError("PatientID=77; broke"))
            == f"PatientID={REDACTED_PHI}; broke"
        )

    def test_cycles_are_cut_off(self, masker: PhiMasker) -> None:
        """A self-referencing structure is truncated instead of recursing forever."""
        loop: list[object] = []
        loop.append(loop)
        depth, current = 0, masker.mask_value(loop)
        while isinstance(current, list):
            depth, current = depth + 1, current[0]
        assert current == TRUNCATED
        assert depth > 10

    def test_processor_interface_masks_event_dict(self, masker: PhiMasker) -> None:
        """Called as a structlog processor, the masker masks message and fields."""
        out = masker(None, "info", {"event": "saw Doe^John", "PatientID": "X"})
        assert out == {"event": f"saw {REDACTED_PHI}", "PatientID": REDACTED_PHI}


class TestKeyCache:
    def test_full_cache_is_cleared_and_results_stay_right(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the key cache is full it starts over; masking results do not change."""
        monkeypatch.setattr("observability.phi._KEY_CACHE_SIZE", 2)
        masker = PhiMasker()
        data = {"PatientID": "P1", "note": "a@b.org", "topic": "t", "dob": "1970"}
        expected = {
            "PatientID": REDACTED_PHI,
            "note": REDACTED_EMAIL,
            "topic": "t",
            "dob": REDACTED_DOB,
        }
        assert masker.mask_mapping(data) == expected
        assert masker.mask_mapping(data) == expected
        assert len(masker._key_cache) <= 2


class TestDefaultMasker:
    def test_module_functions_use_the_configured_masker(self) -> None:
        """mask_text/mask_value follow the masker installed with set_default_masker."""
        previous = default_masker()
        try:
            set_default_masker(PhiMasker(mrn_patterns=(r"\bQ\d{4}\b",)))
            assert mask_text("see Q1234") == f"see {REDACTED_MRN}"
            assert mask_value({"k": "Q9999"}) == {"k": REDACTED_MRN}
        finally:
            set_default_masker(previous)


class TestPersonNamesWithDigits:
    def test_name_components_with_digits_are_masked(self) -> None:
        """A DICOM person name whose components carry digits (CompressedSamples^CT1) is PHI."""
        from observability.phi import REDACTED_PHI, mask_text  # noqa: PLC0415

        assert mask_text("key=CompressedSamples^CT1 sent") == f"key={REDACTED_PHI} sent"

    def test_caret_between_numbers_is_not_a_name(self) -> None:
        """Only components with letters make a name: 2^10 stays as it is."""
        from observability.phi import mask_text  # noqa: PLC0415

        assert mask_text("size 2^10 bytes") == "size 2^10 bytes"
