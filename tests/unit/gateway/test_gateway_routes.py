"""Behaviour of every API endpoint, with in-memory fakes for the ports."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from schemas.errors import ErrorCode, TransientError
from schemas.events import ImageArrived
from streams.topics import TopicKey
from tests.unit.gateway.fakes import Harness, build_harness, make_result

pytestmark = pytest.mark.requirement("RS-API-01", "RS-API-03")

SERVICE = ("svc-1", ["service"])


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API with fakes."""
    return build_harness(tmp_path)


def _reference(harness: Harness, **extra: object) -> dict[str, object]:
    return {"source": "router-1", "image_uri": (harness.root / "a.dcm").as_uri(), **extra}


def _arrival(harness: Harness, index: int = -1) -> ImageArrived:
    value = harness.publisher.messages[index].value
    assert isinstance(value, ImageArrived)
    return value


class TestSubmitReference:
    """POST /infer with a JSON image reference."""

    async def test_answers_202_with_event_id_and_status_url(self, harness: Harness) -> None:
        """The answer names the published event and where to follow it."""
        response = await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(*SERVICE)
        )
        body = response.json()
        assert response.status_code == 202
        assert body["event_id"] == str(_arrival(harness).event_id)
        assert body["status_url"] == f"/events/{body['event_id']}"

    async def test_publishes_arrival_on_images_arrived(self, harness: Harness) -> None:
        """The event goes to images.arrived with the reference's fields."""
        await harness.client.post(
            "/infer",
            json=_reference(harness, modality="CR", model_ids=["chest-xray@1.0.0"]),
            headers=harness.auth(*SERVICE),
        )
        message = harness.publisher.messages[0]
        assert message.topic_key is TopicKey.IMAGES_ARRIVED
        assert (_arrival(harness).modality, _arrival(harness).model_ids) == (
            "CR",
            ("chest-xray@1.0.0",),
        )

    async def test_requested_by_is_the_token_subject(self, harness: Harness) -> None:
        """The requester comes from the token, never from the body."""
        await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(*SERVICE)
        )
        assert _arrival(harness).requested_by == "svc-1"

    async def test_requested_by_in_body_is_refused(self, harness: Harness) -> None:
        """A body trying to set requested_by is invalid (unknown field)."""
        response = await harness.client.post(
            "/infer",
            json=_reference(harness, requested_by="someone-else"),
            headers=harness.auth(*SERVICE),
        )
        assert response.status_code == 400

    async def test_modality_that_is_no_defined_term_is_refused(self, harness: Harness) -> None:
        """A name in code-string shape is REQUEST_INVALID, and the answer does not repeat it."""
        response = await harness.client.post(
            "/infer",
            json=_reference(harness, modality="DOEJANE"),
            headers=harness.auth(*SERVICE),
        )
        assert (response.status_code, response.json()["code"]) == (400, "REQUEST_INVALID")
        assert "DOEJANE" not in response.text
        assert harness.publisher.messages == []

    async def test_key_is_study_uid_when_given(self, harness: Harness) -> None:
        """A study's images share a key (and so a partition)."""
        await harness.client.post(
            "/infer",
            json=_reference(harness, study_instance_uid="1.2.840.1"),
            headers=harness.auth(*SERVICE),
        )
        assert harness.publisher.messages[0].key == b"1.2.840.1"

    async def test_key_is_event_id_without_study(self, harness: Harness) -> None:
        """Without a study UID the event id is the key."""
        await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(*SERVICE)
        )
        assert harness.publisher.messages[0].key == str(_arrival(harness).event_id).encode()

    async def test_clinician_may_submit(self, harness: Harness) -> None:
        """Clinicians submit their own images too."""
        response = await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth()
        )
        assert response.status_code == 202

    async def test_other_content_type_is_400(self, harness: Harness) -> None:
        """Only JSON and multipart bodies are understood."""
        response = await harness.client.post(
            "/infer",
            content=b"source=r1",
            headers={**harness.auth(*SERVICE), "Content-Type": "text/plain"},
        )
        assert response.json()["code"] == "REQUEST_INVALID"

    async def test_broker_outage_is_503_and_audited(self, harness: Harness) -> None:
        """A publisher failure answers its code and records a failed submit."""
        harness.publisher.fail_with = TransientError(ErrorCode.BROKER_UNAVAILABLE)
        response = await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 503
        assert (harness.audit.actions[-1].action, harness.audit.actions[-1].outcome) == (
            "submit",
            "failure",
        )

    async def test_submit_is_audited(self, harness: Harness) -> None:
        """A successful submit records the event id and the caller."""
        await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(*SERVICE)
        )
        action = harness.audit.actions[-1]
        assert (action.action, action.actor_id, action.event_id) == (
            "submit",
            "svc-1",
            _arrival(harness).event_id,
        )

    async def test_submit_survives_audit_outage(self, harness: Harness) -> None:
        """Submit audits are best effort: the arrival event itself is audited downstream."""
        harness.audit.fail_with = TransientError(ErrorCode.BROKER_UNAVAILABLE)
        response = await harness.client.post(
            "/infer", json=_reference(harness), headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 202


class TestSubmitUpload:
    """POST /infer with a multipart upload."""

    async def test_upload_is_stored_under_first_root_per_day(self, harness: Harness) -> None:
        """The file lands in <root>/uploads/<day>/ under a server-chosen name."""
        await harness.client.post(
            "/infer", files={"file": ("scan.dcm", b"DICM-bytes")}, headers=harness.auth(*SERVICE)
        )
        path = Path(_arrival(harness).image_uri.removeprefix("file://"))
        assert path.parent == harness.root / "uploads" / "2026-11-27"
        assert await anyio.Path(path).read_bytes() == b"DICM-bytes"

    async def test_upload_event_has_size_and_sha256(self, harness: Harness) -> None:
        """Size and digest are computed while streaming."""
        await harness.client.post(
            "/infer", files={"file": ("scan.dcm", b"DICM-bytes")}, headers=harness.auth(*SERVICE)
        )
        arrival = _arrival(harness)
        assert (arrival.size_bytes, arrival.sha256) == (
            10,
            hashlib.sha256(b"DICM-bytes").hexdigest(),
        )

    async def test_upload_fields_reach_the_event(self, harness: Harness) -> None:
        """Form fields fill the arrival's optional fields; model_ids may repeat."""
        await harness.client.post(
            "/infer",
            files={"file": ("scan.dcm", b"x")},
            data={
                "source": "ward-7",
                "study_instance_uid": "1.2.3",
                "model_ids": ["a-model", "b-model"],
                "priority": "stat",
            },
            headers=harness.auth(*SERVICE),
        )
        arrival = _arrival(harness)
        assert (
            arrival.source,
            arrival.study_instance_uid,
            arrival.model_ids,
            arrival.priority,
        ) == (
            "ward-7",
            "1.2.3",
            ("a-model", "b-model"),
            "stat",
        )

    async def test_invalid_field_is_400_and_file_removed(self, harness: Harness) -> None:
        """An invalid form field refuses the upload and deletes the stored file."""
        response = await harness.client.post(
            "/infer",
            files={"file": ("scan.dcm", b"x")},
            data={"study_instance_uid": "not-a-uid"},
            headers=harness.auth(*SERVICE),
        )
        assert response.json()["code"] == "REQUEST_INVALID"
        assert [p for p in harness.root.rglob("*") if p.is_file()] == []

    async def test_repeated_single_field_is_400(self, harness: Harness) -> None:
        """A single-valued field given twice is ambiguous and refused."""
        response = await harness.client.post(
            "/infer",
            files={"file": ("scan.dcm", b"x")},
            data={"source": ["a", "b"]},
            headers=harness.auth(*SERVICE),
        )
        assert response.status_code == 400

    async def test_publish_failure_removes_file(self, harness: Harness) -> None:
        """When the event cannot be published, the orphaned upload is deleted."""
        harness.publisher.fail_with = TransientError(ErrorCode.BROKER_UNAVAILABLE)
        response = await harness.client.post(
            "/infer", files={"file": ("scan.dcm", b"x")}, headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 503
        assert [p for p in harness.root.rglob("*") if p.is_file()] == []

    async def test_empty_upload_is_image_empty(self, harness: Harness) -> None:
        """A zero-byte file is refused at once."""
        response = await harness.client.post(
            "/infer", files={"file": ("scan.dcm", b"")}, headers=harness.auth(*SERVICE)
        )
        assert response.json()["code"] == "IMAGE_EMPTY"


class TestBatch:
    """POST /infer/batch."""

    async def test_each_item_gets_an_outcome(self, harness: Harness) -> None:
        """Accepted items carry event ids; counts add up."""
        response = await harness.client.post(
            "/infer/batch",
            json={"items": [_reference(harness), _reference(harness, image_uri="http://x/y.dcm")]},
            headers=harness.auth(*SERVICE),
        )
        body = response.json()
        assert response.status_code == 202
        assert (body["accepted"], body["rejected"]) == (1, 1)
        assert body["items"][0]["event_id"] == str(_arrival(harness).event_id)
        assert body["items"][1]["code"] == "STORAGE_URI_SCHEME_UNSUPPORTED"

    async def test_publish_failure_rejects_only_that_item(self, harness: Harness) -> None:
        """A broker failure is reported per item, not as a failed request."""
        harness.publisher.fail_with = TransientError(ErrorCode.BROKER_UNAVAILABLE)
        response = await harness.client.post(
            "/infer/batch", json={"items": [_reference(harness)]}, headers=harness.auth(*SERVICE)
        )
        assert response.json()["items"][0]["code"] == "BROKER_UNAVAILABLE"

    async def test_empty_batch_is_400(self, harness: Harness) -> None:
        """A batch needs at least one item."""
        response = await harness.client.post(
            "/infer/batch", json={"items": []}, headers=harness.auth(*SERVICE)
        )
        assert response.status_code == 400


class TestModels:
    """GET /models."""

    async def test_lists_the_registry(self, harness: Harness) -> None:
        """Name, version, digest, status and input spec of every model."""
        response = await harness.client.get("/models", headers=harness.auth())
        model = response.json()["models"][0]
        assert (model["name"], model["status"], model["input_spec"]["width"]) == (
            "chest-xray",
            "ready",
            224,
        )


class TestModelComparison:
    """GET /models/{name}/comparison."""

    async def test_admins_get_the_report_over_the_default_window(self, harness: Harness) -> None:
        """The candidate and baseline are passed on; the window defaults to the last 24 h."""
        response = await harness.client.get(
            "/models/chest-xray/comparison?candidate=2.0.0",
            headers=harness.auth("ops-1", ("admin",)),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["candidate"]["model_id"] == "chest-xray@2.0.0"
        assert body["paired_images"] == 0
        (query,) = harness.models.comparisons
        assert (query.name, query.candidate, query.baseline) == ("chest-xray", "2.0.0", None)
        assert query.until - query.since == timedelta(hours=24)

    async def test_a_given_window_is_used(self, harness: Harness) -> None:
        """since and until reach the comparison as given."""
        response = await harness.client.get(
            "/models/chest-xray/comparison",
            params={"since": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00+00:00"},
            headers=harness.auth("aud-1", ("auditor",)),
        )
        assert response.status_code == 200, response.text
        (query,) = harness.models.comparisons
        assert (query.since, query.until) == (
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 11, 2, tzinfo=UTC),
        )

    async def test_clinicians_may_not(self, harness: Harness) -> None:
        """Comparing model versions is for admins and auditors: 403."""
        response = await harness.client.get("/models/chest-xray/comparison", headers=harness.auth())
        assert response.status_code == 403
        assert harness.models.comparisons == []

    async def test_unknown_model_and_bad_version_are_refused(self, harness: Harness) -> None:
        """An unknown model is 404 MODEL_NOT_FOUND; a version that is no version, 400."""
        admin = harness.auth("ops-1", ("admin",))
        missing = await harness.client.get("/models/nope/comparison", headers=admin)
        assert (missing.status_code, missing.json()["code"]) == (404, "MODEL_NOT_FOUND")
        bad = await harness.client.get(
            "/models/chest-xray/comparison?candidate=../x", headers=admin
        )
        assert bad.status_code == 400


class TestListResults:
    """GET /results."""

    async def test_pages_with_cursor(self, harness: Harness) -> None:
        """A full page has a cursor; following it gives the rest."""
        for day in (1, 2, 3):
            harness.results.add(
                make_result("dr-house", completed_at=datetime(2026, 11, day, tzinfo=UTC))
            )
        first = (await harness.client.get("/results?limit=2", headers=harness.auth())).json()
        second = (
            await harness.client.get(
                "/results",
                params={"limit": 2, "cursor": first["next_cursor"]},
                headers=harness.auth(),
            )
        ).json()
        assert (len(first["items"]), len(second["items"]), second["next_cursor"]) == (2, 1, None)

    async def test_filters_by_time_window(self, harness: Harness) -> None:
        """since/until bound the completion time."""
        for day in (1, 5, 9):
            harness.results.add(
                make_result("dr-house", completed_at=datetime(2026, 11, day, tzinfo=UTC))
            )
        response = await harness.client.get(
            "/results",
            params={"since": "2026-11-04T00:00:00Z", "until": "2026-11-06T00:00:00+00:00"},
            headers=harness.auth(),
        )
        assert [item["completed_at"][:10] for item in response.json()["items"]] == ["2026-11-05"]

    async def test_filters_by_status_model_and_study(self, harness: Harness) -> None:
        """status, model and study_uid are passed through to the repository."""
        wanted = harness.results.add(make_result("dr-house", study_instance_uid="9.9"))
        harness.results.add(make_result("dr-house", study_instance_uid="1.1"))
        response = await harness.client.get(
            "/results",
            params={"status": "unverified", "model": "chest-xray", "study_uid": "9.9"},
            headers=harness.auth(),
        )
        assert [item["result_id"] for item in response.json()["items"]] == [str(wanted.result_id)]

    async def test_since_after_until_is_400(self, harness: Harness) -> None:
        """An empty, inverted window is a client error."""
        response = await harness.client.get(
            "/results",
            params={"since": "2026-11-09T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            headers=harness.auth(),
        )
        assert response.status_code == 400

    async def test_naive_time_is_400(self, harness: Harness) -> None:
        """A time without offset is ambiguous and refused."""
        response = await harness.client.get(
            "/results", params={"since": "2026-11-09T00:00:00"}, headers=harness.auth()
        )
        assert response.status_code == 400

    async def test_limit_above_100_is_400(self, harness: Harness) -> None:
        """Pages are at most 100 items."""
        response = await harness.client.get("/results?limit=101", headers=harness.auth())
        assert response.status_code == 400

    async def test_list_is_audited_as_read(self, harness: Harness) -> None:
        """Listing results records a read."""
        await harness.client.get("/results", headers=harness.auth())
        assert (harness.audit.actions[-1].action, harness.audit.actions[-1].route) == (
            "read",
            "/results",
        )

    async def test_list_withheld_when_audit_fails(self, harness: Harness) -> None:
        """No result leaves unaudited: an audit outage answers 503."""
        harness.results.add(make_result("dr-house"))
        harness.audit.fail_with = TransientError(ErrorCode.BROKER_UNAVAILABLE)
        response = await harness.client.get("/results", headers=harness.auth())
        assert response.status_code == 503
        assert "items" not in response.json()


class TestGetResult:
    """GET /results/{result_id}."""

    async def test_returns_result_with_provenance(self, harness: Harness) -> None:
        """The model and input digest come with the result."""
        result = harness.results.add(make_result("dr-house"))
        body = (
            await harness.client.get(f"/results/{result.result_id}", headers=harness.auth())
        ).json()
        assert (body["model"]["weights_sha256"], body["input_sha256"]) == (
            result.model.weights_sha256,
            result.input_sha256,
        )

    async def test_read_is_audited_with_ids(self, harness: Harness) -> None:
        """The read names the result and its event, with the route template."""
        result = harness.results.add(make_result("dr-house"))
        await harness.client.get(f"/results/{result.result_id}", headers=harness.auth())
        action = harness.audit.actions[-1]
        assert (action.result_id, action.event_id, action.route) == (
            result.result_id,
            result.event_id,
            "/results/{result_id}",
        )

    async def test_missing_result_is_404_and_audited(self, harness: Harness) -> None:
        """A miss is 404 and recorded as a failed read (probing shows in the trail)."""
        missing = uuid.uuid4()
        response = await harness.client.get(f"/results/{missing}", headers=harness.auth())
        assert response.status_code == 404
        assert (harness.audit.actions[-1].result_id, harness.audit.actions[-1].outcome) == (
            missing,
            "failure",
        )

    async def test_malformed_id_is_400(self, harness: Harness) -> None:
        """A result id that is not a UUID is a request error."""
        response = await harness.client.get("/results/12345", headers=harness.auth())
        assert response.status_code == 400


class TestVerify:
    """POST /results/{result_id}/verify."""

    async def test_clinician_verifies_own_result(self, harness: Harness) -> None:
        """The answer is the verified result, naming the verifier and the note."""
        result = harness.results.add(make_result("dr-house"))
        response = await harness.client.post(
            f"/results/{result.result_id}/verify", json={"note": "agree"}, headers=harness.auth()
        )
        body = response.json()
        assert (response.status_code, body["status"], body["verified_by"]) == (
            200,
            "verified",
            "dr-house",
        )

    async def test_second_verification_is_409(self, harness: Harness) -> None:
        """Verification happens once."""
        result = harness.results.add(make_result("dr-house"))
        url = f"/results/{result.result_id}/verify"
        await harness.client.post(url, json={"note": "agree"}, headers=harness.auth())
        response = await harness.client.post(url, json={"note": "again"}, headers=harness.auth())
        assert (response.status_code, response.json()["code"]) == (409, "RESULT_ALREADY_VERIFIED")

    async def test_verification_is_audited(self, harness: Harness) -> None:
        """Verify and conflict both leave an ApiAction."""
        result = harness.results.add(make_result("dr-house"))
        url = f"/results/{result.result_id}/verify"
        await harness.client.post(url, json={"note": "agree"}, headers=harness.auth())
        await harness.client.post(url, json={"note": "again"}, headers=harness.auth())
        assert [(a.action, a.http_status) for a in harness.audit.actions] == [
            ("verify", 200),
            ("verify", 409),
        ]

    async def test_empty_note_is_400(self, harness: Harness) -> None:
        """A verification needs a note."""
        result = harness.results.add(make_result("dr-house"))
        response = await harness.client.post(
            f"/results/{result.result_id}/verify", json={"note": ""}, headers=harness.auth()
        )
        assert response.status_code == 400


class TestMalformedJson:
    """Every JSON endpoint answers a body that is not JSON the same way."""

    @pytest.mark.parametrize("path", ["/infer", "/infer/batch", "/results/{result_id}/verify"])
    async def test_not_json_is_one_stable_reason(self, harness: Harness, path: str) -> None:
        """400 REQUEST_INVALID saying the body is not JSON, with no parser position or body."""
        result = harness.results.add(make_result("dr-house"))
        response = await harness.client.post(
            path.format(result_id=result.result_id),
            content=b'{"note": "Doe^Jane',
            headers={**harness.auth(), "Content-Type": "application/json"},
        )
        assert (response.status_code, response.json()["code"], response.json()["message"]) == (
            400,
            "REQUEST_INVALID",
            "invalid request: the body is not valid JSON",
        )
        assert "Doe" not in response.text


class TestLifecycle:
    """GET /events/{event_id}."""

    async def test_submitter_sees_lifecycle(self, harness: Harness) -> None:
        """The submitter gets the steps with stage and error code."""
        event_id = harness.lifecycle.add("svc-1")
        response = await harness.client.get(f"/events/{event_id}", headers=harness.auth(*SERVICE))
        states = [(e["state"], e["error_code"]) for e in response.json()["entries"]]
        assert states == [("arrived", None), ("rejected", "IMAGE_EMPTY")]

    async def test_unknown_event_is_404_for_auditor(self, harness: Harness) -> None:
        """Even overseers get 404 for an event nobody submitted."""
        response = await harness.client.get(
            f"/events/{uuid.uuid4()}", headers=harness.auth(roles=["auditor"])
        )
        assert response.status_code == 404

    async def test_lifecycle_read_is_audited(self, harness: Harness) -> None:
        """Reading a lifecycle records a read with the event id."""
        event_id = harness.lifecycle.add("svc-1")
        await harness.client.get(f"/events/{event_id}", headers=harness.auth(*SERVICE))
        assert harness.audit.actions[-1].event_id == event_id


class TestOperations:
    """GET /healthz, /readyz, /metrics."""

    async def test_healthz_needs_no_token(self, harness: Harness) -> None:
        """Liveness answers without authentication."""
        response = await harness.client.get("/healthz")
        assert response.json() == {"status": "ok"}

    async def test_readyz_ready_when_all_checks_pass(self, harness: Harness) -> None:
        """Every check true → 200 ready."""
        response = await harness.client.get("/readyz")
        assert (response.status_code, response.json()["status"]) == (200, "ready")

    async def test_readyz_503_when_a_check_fails(self, harness: Harness) -> None:
        """One false check → 503 naming it."""
        harness.ready["database"] = False
        response = await harness.client.get("/readyz")
        assert (response.status_code, response.json()["checks"]) == (
            503,
            {"kafka": True, "database": False},
        )

    async def test_readyz_check_raising_counts_as_not_ready(self, harness: Harness) -> None:
        """A check that raises is reported not ready instead of failing the probe."""
        harness.ready["kafka"] = None
        response = await harness.client.get("/readyz")
        assert response.json()["checks"]["kafka"] is False

    async def test_metrics_count_requests_by_route_template(self, harness: Harness) -> None:
        """Requests are counted by template, never by concrete id."""
        await harness.client.get(f"/results/{uuid.uuid4()}", headers=harness.auth())
        await harness.client.get("/metrics")
        labels = {"route": "/results/{result_id}", "method": "GET", "status": "404"}
        assert harness.registry.get_sample_value("radstream_api_requests_total", labels) == 1
        name = "radstream_api_request_duration_seconds_count"
        assert harness.registry.get_sample_value(name, labels) == 1

    async def test_readyz_feeds_the_reachability_gauges(self, harness: Harness) -> None:
        """The API's database and broker gauges follow its readiness checks, absent before."""
        assert harness.registry.get_sample_value("radstream_database_up") is None
        harness.ready["database"] = False
        await harness.client.get("/readyz")
        assert harness.registry.get_sample_value("radstream_database_up") == 0
        assert harness.registry.get_sample_value("radstream_broker_up") == 1

    async def test_auth_decisions_are_counted(self, harness: Harness) -> None:
        """Unauthenticated, forbidden and authenticated callers each move the auth counter."""
        await harness.client.get("/models")
        await harness.client.get("/models", headers=harness.auth())

        def count(outcome: str, reason: str) -> float | None:
            labels = {"outcome": outcome, "reason": reason}
            return harness.registry.get_sample_value("radstream_api_auth_total", labels)

        assert count("failure", "unauthenticated") == 1
        assert count("success", "authenticated") == 1

    async def test_rate_limited_requests_are_counted(self, tmp_path: Path) -> None:
        """A request refused by the caller's rate limit is counted by scope."""
        harness = build_harness(tmp_path, rate_limit_per_subject_per_minute=1)
        statuses = [
            (await harness.client.get("/models", headers=harness.auth())).status_code
            for _ in range(2)
        ]
        assert statuses == [200, 429]
        labels = {"scope": "subject"}
        assert harness.registry.get_sample_value("radstream_api_rate_limited_total", labels) == 1

    async def test_metrics_is_prometheus_text(self, harness: Harness) -> None:
        """The exposition format content type is served."""
        response = await harness.client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
