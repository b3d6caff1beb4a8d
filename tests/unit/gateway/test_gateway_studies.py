"""``GET /studies/{uid}`` and ``POST /studies/{uid}/acknowledge``: roles, answers, audit."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from schemas.audit import ApiActionKind
from schemas.errors import ErrorCode, TransientError
from schemas.events import Priority
from schemas.studies import StudyStatus, StudyView
from tests.unit.gateway.fakes import Harness, build_harness

pytestmark = pytest.mark.requirement("RS-STU-02", "RS-CDS-01")

STUDY = "1.2.826.0.1.3680043.8.498.1"
CLINICIAN = ("dr-house", ("clinician",))


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API with fakes and one known study."""
    built = build_harness(tmp_path)
    built.studies.views[STUDY] = StudyView(
        study_instance_uid=STUDY,
        status=StudyStatus.COMPLETE,
        priority=Priority.STAT,
        generation=1,
        instance_count=3,
        arrivals=4,
        lifecycle={"arrived": 4, "validated": 3},
    )
    return built


class TestGetStudy:
    async def test_clinician_reads_the_status(self, harness: Harness) -> None:
        """A clinician gets the status and counts; the read is audited with the study UID."""
        response = await harness.client.get(f"/studies/{STUDY}", headers=harness.auth(*CLINICIAN))
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["instance_count"], body["lifecycle"]["arrived"]) == (
            "complete",
            3,
            4,
        )
        action = harness.audit.actions[-1]
        assert (action.action, action.study_instance_uid) == (ApiActionKind.READ, STUDY)

    async def test_unknown_study_is_404_with_its_code(self, harness: Harness) -> None:
        """An unknown study answers 404 STUDY_NOT_FOUND."""
        response = await harness.client.get("/studies/1.2.3", headers=harness.auth(*CLINICIAN))
        assert response.status_code == 404
        assert response.json()["code"] == ErrorCode.STUDY_NOT_FOUND

    async def test_service_may_not_read(self, harness: Harness) -> None:
        """A submitting service does not read clinical status (403)."""
        response = await harness.client.get(
            f"/studies/{STUDY}", headers=harness.auth("svc", ("service",))
        )
        assert response.status_code == 403

    async def test_phi_shaped_uid_is_refused(self, harness: Harness) -> None:
        """A path that is not a DICOM UID (a name, say) is refused before any lookup."""
        response = await harness.client.get("/studies/DOE%5EJOHN", headers=harness.auth(*CLINICIAN))
        assert (response.status_code, response.json()["code"]) == (400, "REQUEST_INVALID")
        assert "DOE" not in response.text
        assert harness.studies.acknowledged == []

    async def test_database_down_is_503(self, harness: Harness) -> None:
        """A database outage is a retryable 503, not a 500."""
        harness.studies.fail = TransientError(ErrorCode.DATABASE_UNAVAILABLE, "down")
        response = await harness.client.get(f"/studies/{STUDY}", headers=harness.auth(*CLINICIAN))
        assert response.status_code == 503


class TestAcknowledge:
    async def test_clinician_acknowledges_once(self, harness: Harness) -> None:
        """The findings are acknowledged by the caller; the second call acknowledges nothing."""
        alert = uuid.uuid4()
        harness.studies.unacknowledged[STUDY] = [alert]
        url = f"/studies/{STUDY}/acknowledge"
        first = await harness.client.post(url, headers=harness.auth(*CLINICIAN))
        second = await harness.client.post(url, headers=harness.auth(*CLINICIAN))
        assert first.json()["acknowledged"] == [str(alert)]
        assert second.json()["acknowledged"] == []
        assert harness.studies.acknowledged[0][:2] == (STUDY, "dr-house")
        action = harness.audit.actions[-1]
        assert (action.action, action.study_instance_uid, action.outcome) == (
            ApiActionKind.URGENT_ACKNOWLEDGE,
            STUDY,
            "success",
        )

    async def test_admin_may_not_acknowledge(self, harness: Harness) -> None:
        """Acknowledging is a clinical act: an admin gets 403."""
        response = await harness.client.post(
            f"/studies/{STUDY}/acknowledge", headers=harness.auth("root", ("admin",))
        )
        assert response.status_code == 403

    async def test_unknown_study_is_404_and_audited(self, harness: Harness) -> None:
        """Acknowledging an unknown study fails with 404, and the attempt is in the trail."""
        response = await harness.client.post(
            "/studies/1.2.3/acknowledge", headers=harness.auth(*CLINICIAN)
        )
        assert response.status_code == 404
        action = harness.audit.actions[-1]
        assert (action.action, action.outcome, action.error_code) == (
            ApiActionKind.URGENT_ACKNOWLEDGE,
            "failure",
            ErrorCode.STUDY_NOT_FOUND,
        )
