"""Roles and visibility: callers only do what their roles allow and only see their own data."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.unit.gateway.fakes import Harness, build_harness, make_result

pytestmark = pytest.mark.requirement("RS-API-03")


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API with fakes."""
    return build_harness(tmp_path)


def _reference(harness: Harness) -> dict[str, str]:
    (harness.root / "img.dcm").write_bytes(b"DICM")
    return {"source": "router-1", "image_uri": (harness.root / "img.dcm").as_uri()}


class TestRoleViolations:
    """Each action refuses callers without a suitable role (403, audited)."""

    async def test_auditor_cannot_submit(self, harness: Harness) -> None:
        """Submitting needs service, clinician or admin."""
        response = await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(roles=["auditor"])
        )
        assert response.status_code == 403
        assert response.json()["code"] == "AUTHORIZATION_FAILED"
        assert harness.publisher.messages == []

    async def test_token_without_roles_cannot_submit_batch(self, harness: Harness) -> None:
        """A caller with no known role cannot submit a batch."""
        response = await harness.client.post(
            "/infer/batch",
            json={"items": [_reference(harness)]},
            headers=harness.auth(roles=["superuser"]),
        )
        assert response.status_code == 403

    async def test_auditor_cannot_list_results(self, harness: Harness) -> None:
        """Auditors read lifecycles, not results."""
        response = await harness.client.get("/results", headers=harness.auth(roles=["auditor"]))
        assert response.status_code == 403

    @pytest.mark.parametrize("role", ["service", "admin", "auditor"])
    async def test_only_clinicians_verify(self, harness: Harness, role: str) -> None:
        """Verification is a clinical act: no other role may do it, admin included."""
        result = harness.results.add(make_result("svc-1"))
        response = await harness.client.post(
            f"/results/{result.result_id}/verify",
            json={"note": "looks right"},
            headers=harness.auth("svc-1", roles=[role]),
        )
        assert response.status_code == 403

    async def test_role_violation_is_audited(self, harness: Harness) -> None:
        """A 403 leaves an auth_failure ApiAction naming the caller."""
        await harness.client.get("/results", headers=harness.auth("aud-1", roles=["auditor"]))
        action = harness.audit.actions[-1]
        assert (action.action, action.actor_id, action.http_status) == (
            "auth_failure",
            "aud-1",
            403,
        )


class TestCrossUserAccess:
    """Another user's result or event answers exactly like a missing one: 404."""

    async def test_other_users_result_is_404(self, harness: Harness) -> None:
        """A clinician cannot read a colleague's result."""
        result = harness.results.add(make_result("dr-other"))
        response = await harness.client.get(
            f"/results/{result.result_id}", headers=harness.auth("dr-house")
        )
        assert response.status_code == 404

    async def test_other_users_result_looks_like_missing_one(self, harness: Harness) -> None:
        """The 404 for a foreign result has the same code and message as for a missing id."""
        result = harness.results.add(make_result("dr-other"))
        foreign = await harness.client.get(f"/results/{result.result_id}", headers=harness.auth())
        missing = await harness.client.get(f"/results/{uuid.uuid4()}", headers=harness.auth())
        assert (foreign.json()["code"], foreign.json()["message"]) == (
            missing.json()["code"],
            missing.json()["message"],
        )

    async def test_other_users_result_cannot_be_verified(self, harness: Harness) -> None:
        """Verifying a colleague's result is 404 and leaves it unverified."""
        result = harness.results.add(make_result("dr-other"))
        response = await harness.client.post(
            f"/results/{result.result_id}/verify", json={"note": "ok"}, headers=harness.auth()
        )
        assert response.status_code == 404
        assert harness.results.rows[0].status == "unverified"

    async def test_list_shows_only_own_results(self, harness: Harness) -> None:
        """GET /results never includes another user's results."""
        own = harness.results.add(make_result("dr-house"))
        harness.results.add(make_result("dr-other"))
        response = await harness.client.get("/results", headers=harness.auth())
        assert [item["result_id"] for item in response.json()["items"]] == [str(own.result_id)]

    async def test_admin_reads_any_result(self, harness: Harness) -> None:
        """Admins are unrestricted on single reads."""
        result = harness.results.add(make_result("dr-other"))
        response = await harness.client.get(
            f"/results/{result.result_id}", headers=harness.auth("root", roles=["admin"])
        )
        assert response.status_code == 200

    async def test_other_submitters_event_is_404(self, harness: Harness) -> None:
        """A service cannot follow another submitter's image."""
        event_id = harness.lifecycle.add("svc-other")
        response = await harness.client.get(
            f"/events/{event_id}", headers=harness.auth("svc-1", roles=["service"])
        )
        assert response.status_code == 404

    @pytest.mark.parametrize("role", ["auditor", "admin"])
    async def test_overseers_follow_any_event(self, harness: Harness, role: str) -> None:
        """Auditors and admins may read every lifecycle."""
        event_id = harness.lifecycle.add("svc-other")
        response = await harness.client.get(
            f"/events/{event_id}", headers=harness.auth("aud-1", roles=[role])
        )
        assert response.status_code == 200
