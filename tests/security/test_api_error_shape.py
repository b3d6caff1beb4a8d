"""Errors have one shape, no stack trace and no patient data, whatever went wrong."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.unit.gateway.fakes import Harness, build_harness

pytestmark = pytest.mark.requirement("RS-API-01", "RS-G-02", "ASVS-16.5.1")

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "MRN-8675309"
CORR_500, CORR_LOG = "c5" * 16, "c1" * 16


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API with fakes."""
    return build_harness(tmp_path)


def _assert_error_shape(body: dict[str, object]) -> None:
    assert set(body) == {"code", "message", "correlation_id"}


@pytest.fixture
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture structlog output (and keep the default console renderer out of the test)."""
    with capture_logs() as logs:
        yield logs


@pytest.mark.usefixtures("captured_logs")
class TestNoStackTraces:
    """Unexpected failures answer INTERNAL_ERROR and keep the details in the log."""

    async def test_unexpected_exception_is_500_internal_error(self, harness: Harness) -> None:
        """A port raising a plain exception gives the safe 500 shape."""
        harness.results.fail_with = RuntimeError(f"db row for {PATIENT_NAME} broke")
        response = await harness.client.get("/results", headers=harness.auth())
        assert response.status_code == 500
        assert response.json()["code"] == "INTERNAL_ERROR"
        _assert_error_shape(response.json())

    async def test_500_has_no_traceback_or_exception_text(self, harness: Harness) -> None:
        """Neither the traceback nor the exception's message reaches the client."""
        harness.results.fail_with = RuntimeError(f"db row for {PATIENT_NAME} broke")
        response = await harness.client.get("/results", headers=harness.auth())
        assert "Traceback" not in response.text
        assert "RuntimeError" not in response.text
        assert PATIENT_NAME not in response.text

    async def test_500_still_has_security_headers(self, harness: Harness) -> None:
        """The safe 500 carries the correlation id and the hardening headers."""
        harness.results.fail_with = RuntimeError("boom")
        response = await harness.client.get(
            "/results", headers={**harness.auth(), "X-Correlation-ID": CORR_500}
        )
        assert response.headers["x-correlation-id"] == CORR_500
        assert response.json()["correlation_id"] == CORR_500
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_500_is_logged_with_correlation_id(
        self, harness: Harness, captured_logs: list[MutableMapping[str, Any]]
    ) -> None:
        """The full failure is logged once, tied to the request's correlation id."""
        harness.results.fail_with = RuntimeError("boom")
        await harness.client.get(
            "/results", headers={**harness.auth(), "X-Correlation-ID": CORR_LOG}
        )
        failures = [entry for entry in captured_logs if entry["event"] == "api_request_failed"]
        assert [entry.get("correlation_id") for entry in failures] == [CORR_LOG]


class TestNoPatientData:
    """Request values are never echoed in error messages."""

    async def test_invalid_value_is_not_echoed(self, harness: Harness) -> None:
        """A patient name in an invalid field does not come back in the 400."""
        response = await harness.client.post(
            "/infer",
            json={"source": PATIENT_NAME, "image_uri": "file:///x/y.dcm"},
            headers=harness.auth(roles=["service"]),
        )
        assert response.status_code == 400
        assert PATIENT_NAME not in response.text
        assert "source" in response.json()["message"]

    async def test_smuggled_patient_field_is_refused_without_echo(self, harness: Harness) -> None:
        """An unexpected patient field is refused, and neither its name nor value is echoed."""
        response = await harness.client.post(
            "/infer",
            json={
                "source": "r1",
                "image_uri": (harness.root / "a.dcm").as_uri(),
                PATIENT_ID: PATIENT_NAME,
            },
            headers=harness.auth(roles=["service"]),
        )
        assert response.status_code == 400
        assert PATIENT_NAME not in response.text
        assert PATIENT_ID not in response.text

    async def test_invalid_query_value_is_not_echoed(self, harness: Harness) -> None:
        """A patient id in a query parameter is not repeated in the error."""
        response = await harness.client.get(
            "/results", params={"study_uid": PATIENT_ID}, headers=harness.auth()
        )
        assert response.status_code == 400
        assert PATIENT_ID not in response.text

    async def test_malformed_json_is_request_invalid(self, harness: Harness) -> None:
        """Broken JSON is a 400 REQUEST_INVALID with the one error shape."""
        response = await harness.client.post(
            "/infer",
            content=b'{"source": "' + PATIENT_NAME.encode(),
            headers={**harness.auth(roles=["service"]), "Content-Type": "application/json"},
        )
        assert response.json()["code"] == "REQUEST_INVALID"
        _assert_error_shape(response.json())
        assert PATIENT_NAME not in response.text

    async def test_unknown_route_uses_error_shape(self, harness: Harness) -> None:
        """Framework 404s use the same shape, without echoing the path."""
        response = await harness.client.get(f"/patients/{PATIENT_NAME}")
        assert response.status_code == 404
        _assert_error_shape(response.json())
        assert "Jane" not in response.text

    async def test_wrong_method_uses_error_shape(self, harness: Harness) -> None:
        """A 405 uses the same shape with REQUEST_INVALID."""
        response = await harness.client.delete("/results")
        assert response.status_code == 405
        assert response.json()["code"] == "REQUEST_INVALID"

    async def test_verification_note_never_reaches_audit(self, harness: Harness) -> None:
        """The free-text note (which may mention the patient) is not in the ApiAction."""
        from tests.unit.gateway.fakes import make_result  # noqa: PLC0415

        result = harness.results.add(make_result("dr-house"))
        await harness.client.post(
            f"/results/{result.result_id}/verify",
            json={"note": f"discussed with {PATIENT_NAME}"},
            headers=harness.auth(),
        )
        dumped = harness.audit.actions[-1].model_dump_json()
        assert harness.audit.actions[-1].action == "verify"
        assert PATIENT_NAME not in dumped
