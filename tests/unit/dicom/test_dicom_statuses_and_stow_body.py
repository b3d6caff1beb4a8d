"""DICOM statuses for our errors, and the STOW-RS DICOM JSON answer."""

from __future__ import annotations

import json

import pytest

from schemas.errors import ErrorCode, error_for
from streams.dicom import statuses
from streams.dicom.dicomweb import (
    FAILED_SOP_SEQUENCE,
    REFERENCED_SOP_SEQUENCE,
    StowFailed,
    StowStored,
    stow_response,
    stow_status,
)


class TestFailureStatus:
    @pytest.mark.parametrize(
        "code",
        [
            ErrorCode.BROKER_UNAVAILABLE,
            ErrorCode.TIMEOUT,
            ErrorCode.STORAGE_WRITE_FAILED,
        ],
    )
    def test_retryable_errors_answer_out_of_resources(self, code: ErrorCode) -> None:
        """Broker, timeout and disk trouble answer A700, which senders retry."""
        assert statuses.failure_status(error_for(code)) == statuses.OUT_OF_RESOURCES

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            (ErrorCode.DICOM_SOP_CLASS_UNSUPPORTED, 0x0122),
            (ErrorCode.TRANSFER_SYNTAX_UNSUPPORTED, 0xC122),
            (ErrorCode.DICOM_INVALID_VALUE, 0xA900),
            (ErrorCode.IMAGE_TOO_LARGE, 0xC000),
            (ErrorCode.DICOM_NOT_PART10, 0xC000),
        ],
    )
    def test_bad_instances_answer_a_permanent_failure(self, code: ErrorCode, status: int) -> None:
        """Problems with the instance itself answer statuses senders do not retry."""
        assert statuses.failure_status(error_for(code)) == status
        assert not statuses.is_retryable_status(status)


class TestPeerStatuses:
    @pytest.mark.parametrize("status", [0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB007])
    def test_success_and_warnings_mean_stored(self, status: int) -> None:
        """Success and warning statuses mean the peer stored the object."""
        assert statuses.is_success_or_warning(status)

    @pytest.mark.parametrize("status", [0xA700, 0xA7FF, 0xC000, 0x0122, 0xA900])
    def test_failures_are_not_success(self, status: int) -> None:
        """Failure statuses are not success."""
        assert not statuses.is_success_or_warning(status)

    def test_only_a7xx_is_retryable(self) -> None:
        """Out of resources (A7xx) is the one failure worth retrying."""
        assert statuses.is_retryable_status(0xA702)
        assert not statuses.is_retryable_status(0xC001)


STORED = StowStored("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4")
FAILED = StowFailed(0xC000, ErrorCode.DICOM_NOT_PART10, "not DICOM", retryable=False)
BUSY = StowFailed(0xA700, ErrorCode.TIMEOUT, "broker slow", retryable=True)


class TestStowBody:
    def test_stored_instances_are_referenced(self) -> None:
        """Each stored instance appears in the Referenced SOP Sequence with its UIDs."""
        body = stow_response([STORED], [])
        item = body[REFERENCED_SOP_SEQUENCE]["Value"][0]
        assert item["00081150"] == {"vr": "UI", "Value": [STORED.sop_class_uid]}
        assert item["00081155"] == {"vr": "UI", "Value": [STORED.sop_instance_uid]}
        assert FAILED_SOP_SEQUENCE not in body

    def test_failures_carry_reason_and_our_code(self) -> None:
        """A failure item has the DICOM failure reason and our code under a private creator."""
        item = stow_response([], [FAILED])[FAILED_SOP_SEQUENCE]["Value"][0]
        assert item["00081197"] == {"vr": "US", "Value": [0xC000]}
        assert item["00090010"] == {"vr": "LO", "Value": ["RADSTREAM"]}
        assert item["00091001"] == {"vr": "LO", "Value": ["DICOM_NOT_PART10"]}
        assert "00081155" not in item  # unknown UIDs are left out

    def test_body_is_json(self) -> None:
        """The answer serialises as JSON."""
        assert json.loads(json.dumps(stow_response([STORED], [FAILED, BUSY])))

    @pytest.mark.parametrize(
        ("stored", "failed", "status"),
        [
            ([STORED], [], 200),
            ([STORED], [FAILED], 202),
            ([], [FAILED], 409),
            ([], [FAILED, BUSY], 409),
            ([], [BUSY], 503),
        ],
    )
    def test_http_status(
        self, stored: list[StowStored], failed: list[StowFailed], status: int
    ) -> None:
        """200 all stored, 202 partial, 503 nothing stored but worth a retry, else 409."""
        assert stow_status(stored, failed) == status
