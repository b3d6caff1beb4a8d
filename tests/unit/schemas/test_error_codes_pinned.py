"""The committed list of error codes: a code is never renamed, reused or removed.

Codes are published on topics and stored in the database; operators filter dead letters by them.
Appending a new code means appending it here too. Changing or deleting a line here is a breaking
change and must not happen.
"""

from __future__ import annotations

import pytest

from schemas.errors import ERROR_CATALOGUE, ErrorCode

pytestmark = pytest.mark.requirement("RS-ERR-01")

PINNED_CODES = (
    "EVENT_MALFORMED",
    "EVENT_SCHEMA_VERSION_UNSUPPORTED",
    "STORAGE_URI_SCHEME_UNSUPPORTED",
    "STORAGE_PATH_OUTSIDE_ROOTS",
    "STORAGE_FILE_NOT_FOUND",
    "STORAGE_READ_FAILED",
    "IMAGE_EMPTY",
    "IMAGE_TOO_LARGE",
    "IMAGE_SIZE_MISMATCH",
    "CHECKSUM_MISMATCH",
    "IMAGE_FORMAT_UNSUPPORTED",
    "IMAGE_MALFORMED",
    "IMAGE_DIMENSIONS_OUT_OF_RANGE",
    "IMAGE_DECOMPRESSION_BOMB",
    "DICOM_NOT_PART10",
    "DICOM_TRANSFER_SYNTAX_MISSING",
    "DICOM_INVALID_VALUE",
    "TRANSFER_SYNTAX_UNSUPPORTED",
    "PIXEL_DATA_MISSING",
    "PIXEL_DATA_TRUNCATED",
    "PIXEL_FORMAT_UNSUPPORTED",
    "PIXEL_VALUES_OUT_OF_RANGE",
    "PHOTOMETRIC_UNSUPPORTED",
    "MULTIFRAME_NOT_ALLOWED",
    "CLINICAL_MODALITY_NOT_ALLOWED",
    "CLINICAL_BODY_PART_NOT_ALLOWED",
    "CLINICAL_ATTRIBUTE_MISSING",
    "CLINICAL_PIXEL_SPACING_INVALID",
    "CLINICAL_SLICE_THICKNESS_INVALID",
    "CLINICAL_PATIENT_AGE_OUT_OF_RANGE",
    "MODEL_INPUT_INCOMPATIBLE",
    "MODEL_NOT_FOUND",
    "MODEL_NO_ROUTE",
    "MODEL_CHECKSUM_MISMATCH",
    "MODEL_LOAD_FAILED",
    "INFERENCE_PREPROCESSING_FAILED",
    "INFERENCE_FAILED",
    "REQUEST_INVALID",
    "PAYLOAD_TOO_LARGE",
    "AUTHENTICATION_FAILED",
    "AUTHORIZATION_FAILED",
    "RESOURCE_NOT_FOUND",
    "RESULT_ALREADY_VERIFIED",
    "RATE_LIMITED",
    "AUDIT_CHAIN_BROKEN",
    "AUDIT_CHECKPOINT_INVALID",
    "BROKER_UNAVAILABLE",
    "DATABASE_UNAVAILABLE",
    "TIMEOUT",
    "RETRIES_EXHAUSTED",
    "INTERNAL_ERROR",
    "DEAD_LETTER_ALREADY_REPLAYED",
    "BROKER_REQUEST_REFUSED",
    "SETTINGS_INVALID",
    "CHECK_FAILED",
    "STORAGE_WRITE_FAILED",
    "DICOM_SOP_CLASS_UNSUPPORTED",
    "DICOM_PEER_UNAVAILABLE",
    "DICOM_EXPORT_REFUSED",
    "MODEL_INPUT_OUT_OF_DISTRIBUTION",
    "MODEL_MANIFEST_MISMATCH",
    "MODEL_VERSION_RETIRED",
    "MODEL_REGISTRY_CONFLICT",
    "STORAGE_FILE_INCOMPLETE",
    "IMAGE_STUDY_UID_MISMATCH",
    "STUDY_RESULT_MISSING",
    "STUDY_NOT_FOUND",
    "AUDIT_RECORD_FORGED",
)


class TestErrorCodesPinned:
    def test_committed_codes_still_exist_in_order(self) -> None:
        """Every pinned code exists with the same value, in the same order (append only)."""
        current = [code.value for code in ErrorCode]
        assert current[: len(PINNED_CODES)] == list(PINNED_CODES)

    def test_new_codes_are_pinned(self) -> None:
        """No code exists that this list does not pin (append it here when adding one)."""
        assert [code.value for code in ErrorCode] == list(PINNED_CODES)

    def test_names_equal_values(self) -> None:
        """Each code's name is its value, so logs, JSON and Python agree."""
        assert all(code.name == code.value for code in ErrorCode)

    def test_every_code_has_a_catalogue_entry(self) -> None:
        """Every code is described in the catalogue."""
        assert set(ERROR_CATALOGUE) == set(ErrorCode)


class TestReadmeDocumentsCodes:
    def test_readme_table_matches_catalogue(self) -> None:
        """The README lists every code with its HTTP status and retryability, and no others."""
        from pathlib import Path  # noqa: PLC0415

        from schemas.errors import ERROR_CATALOGUE  # noqa: PLC0415

        readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
        table = readme.split("<!-- error-codes:start -->")[1].split("<!-- error-codes:end -->")[0]
        rows = {
            cells[1].strip("` "): (int(cells[2]), cells[3].strip() == "yes")
            for line in table.splitlines()
            if line.startswith("| `")
            for cells in [line.split("|")]
        }
        expected = {c.value: (s.http_status, s.retryable) for c, s in ERROR_CATALOGUE.items()}
        assert rows == expected
