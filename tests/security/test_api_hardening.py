"""Issue #16's API findings, replayed: failed-auth floods, access log, redirects, dates, tokens."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from cli.api import server_config
from schemas.errors import InputValidationError
from sinks.repositories import decode_cursor
from tests.unit.gateway.fakes import Harness, build_harness, make_result

pytestmark = pytest.mark.requirement("RS-SEC-04")

USER = "dr-valid"
BAD_TOKEN = {"Authorization": "Bearer not.a.token"}


def _client_from(harness: Harness, address: str) -> httpx.AsyncClient:
    """A client of the same app whose requests come from ``address``."""
    transport = httpx.ASGITransport(
        app=harness.app, raise_app_exceptions=False, client=(address, 40000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class TestFailedAuthenticationFlood:
    """Bad tokens are charged per client address, never to the budget valid users share."""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        """The attack's shape: a global budget smaller than the flood, 5 failures per address."""
        return build_harness(
            tmp_path,
            rate_limit_per_subject_per_minute=100,
            rate_limit_global_per_minute=60,
            rate_limit_failed_auth_per_address_per_minute=5,
        )

    async def test_flood_from_many_addresses_leaves_valid_user_unthrottled(
        self, harness: Harness
    ) -> None:
        """40 addresses each sending bad tokens within their limit; the valid user gets 52 x 200."""
        for index in range(40):
            async with _client_from(harness, f"10.1.0.{index + 1}") as attacker:
                for _ in range(5):
                    response = await attacker.get("/results", headers=BAD_TOKEN)
                    assert response.status_code == 401
        statuses = [
            (await harness.client.get("/results", headers=harness.auth(USER))).status_code
            for _ in range(52)
        ]
        assert statuses == [200] * 52

    async def test_an_address_over_its_failure_limit_is_429(self, harness: Harness) -> None:
        """The sixth bad token from one address within a minute is refused with Retry-After."""
        async with _client_from(harness, "10.2.0.1") as attacker:
            statuses = [
                (await attacker.get("/results", headers=BAD_TOKEN)).status_code for _ in range(6)
            ]
            last = await attacker.get("/results", headers=BAD_TOKEN)
        assert statuses == [401] * 5 + [429]
        assert last.json()["code"] == "RATE_LIMITED"
        assert int(last.headers["retry-after"]) >= 1

    async def test_failure_limit_is_per_address(self, harness: Harness) -> None:
        """One address at its limit does not throttle another address's failures."""
        async with _client_from(harness, "10.3.0.1") as first:
            for _ in range(6):
                await first.get("/results", headers=BAD_TOKEN)
        async with _client_from(harness, "10.3.0.2") as second:
            response = await second.get("/results", headers=BAD_TOKEN)
        assert response.status_code == 401


class TestAccessLog:
    """No query string reaches the logs: tokens and PHI typed into filters stay out."""

    async def test_request_line_has_route_template_only(self, tmp_path: Path) -> None:
        """A token in ?access_token= and a name in the query appear in no log field."""
        harness = build_harness(tmp_path)
        token = harness.token(USER)
        with capture_logs() as logs:
            response = await harness.client.get(
                "/results",
                params={"access_token": token, "model": "Quillfeather^Ottoline"},
            )
        assert response.status_code == 401
        served = [entry for entry in logs if entry["event"] == "api_request_served"]
        assert served == [
            {
                "event": "api_request_served",
                "log_level": "info",
                "method": "GET",
                "route": "/results",
                "status": 401,
                "duration_ms": served[0]["duration_ms"],
            }
        ]
        text = repr(logs)
        assert token not in text
        assert "Quillfeather" not in text

    async def test_concrete_path_is_not_logged(self, tmp_path: Path) -> None:
        """A result id in the path is logged as its template, ``/results/{result_id}``."""
        harness = build_harness(tmp_path)
        result_id = uuid.uuid4()
        with capture_logs() as logs:
            await harness.client.get(f"/results/{result_id}", headers=harness.auth(USER))
        assert str(result_id) not in repr(logs)
        assert {"route": "/results/{result_id}"}.items() <= logs[-1].items()

    def test_uvicorn_access_log_is_off(self, tmp_path: Path) -> None:
        """The server the ``api`` command runs writes no access line of its own."""
        harness = build_harness(tmp_path)
        config = server_config(harness.app, harness.settings)
        assert config.access_log is False
        assert config.log_config is None


class TestNoHostRedirects:
    """A trailing slash is a 404, never a redirect built from the client's Host header."""

    @pytest.mark.parametrize("path", ["/results/", "/models/", f"/results/{uuid.uuid4()}/"])
    async def test_trailing_slash_is_404_without_location(self, tmp_path: Path, path: str) -> None:
        """``Host: evil.example`` gets no Location pointing anywhere."""
        harness = build_harness(tmp_path)
        response = await harness.client.get(
            path, headers={**harness.auth(USER), "Host": "evil.example"}
        )
        assert response.status_code == 404
        assert "location" not in response.headers


OUT_OF_RANGE = [
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59-00:01",
    "0001-01-01T00:00:00+00:01",
]


class TestDateRanges:
    """Times that overflow in UTC are a 400 with a stable code, in filters and cursors."""

    @pytest.mark.parametrize("value", OUT_OF_RANGE)
    @pytest.mark.parametrize("name", ["since", "until"])
    async def test_out_of_range_filter_is_400(self, tmp_path: Path, name: str, value: str) -> None:
        """The issue's values answer REQUEST_INVALID, not 500."""
        harness = build_harness(tmp_path)
        response = await harness.client.get(
            "/results", params={name: value}, headers=harness.auth(USER)
        )
        assert response.status_code == 400
        assert response.json()["code"] == "REQUEST_INVALID"

    async def test_extreme_but_representable_times_are_accepted(self, tmp_path: Path) -> None:
        """The last second of year 9999 in UTC and the first of year 1 are valid filters."""
        harness = build_harness(tmp_path)
        harness.results.add(make_result(USER))
        response = await harness.client.get(
            "/results",
            params={"since": "0001-01-01T00:00:00+00:00", "until": "9999-12-31T23:59:59+00:00"},
            headers=harness.auth(USER),
        )
        assert response.status_code == 200
        assert len(response.json()["items"]) == 1

    @pytest.mark.parametrize("value", OUT_OF_RANGE)
    def test_cursor_holding_out_of_range_time_is_refused(self, value: str) -> None:
        """A crafted keyset cursor is an input error before it reaches asyncpg."""
        raw = json.dumps({"c": value, "r": str(uuid.uuid4())}).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        with pytest.raises(InputValidationError) as caught:
            decode_cursor(cursor)
        assert caught.value.code == "REQUEST_INVALID"

    def test_cursor_time_is_normalised_to_utc(self) -> None:
        """A valid cursor's time reaches the query in UTC."""
        raw = json.dumps({"c": "2026-01-01T10:00:00+02:00", "r": str(uuid.uuid4())}).encode()
        completed_at, _ = decode_cursor(base64.urlsafe_b64encode(raw).decode())
        assert completed_at.isoformat() == "2026-01-01T08:00:00+00:00"


class TestTokenLifetime:
    """Numeric time claims and a maximum lifetime."""

    @pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
    async def test_string_time_claim_is_refused(self, tmp_path: Path, claim: str) -> None:
        """A numeric string (which PyJWT alone would accept) is not a time."""
        harness = build_harness(tmp_path)
        now = int(time.time())
        values = {"exp": now + 300, "iat": now, "nbf": now}
        token = harness.token(USER, **{claim: str(values[claim])})
        response = await harness.client.get(
            "/results", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401

    async def test_boolean_time_claim_is_refused(self, tmp_path: Path) -> None:
        """``true`` is not a time, although Python counts it as an int."""
        harness = build_harness(tmp_path)
        token = harness.token(USER, nbf=True)
        response = await harness.client.get(
            "/results", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401

    async def test_far_future_exp_is_refused(self, tmp_path: Path) -> None:
        """``exp = 10**30`` exceeds any maximum lifetime."""
        harness = build_harness(tmp_path)
        token = harness.token(USER, exp=10**30)
        response = await harness.client.get(
            "/results", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert response.json()["code"] == "AUTHENTICATION_FAILED"

    async def test_lifetime_over_the_setting_is_refused(self, tmp_path: Path) -> None:
        """With a one-hour maximum, a token valid for one hour and a minute is refused."""
        harness = build_harness(tmp_path, jwt_max_lifetime_seconds=3600)
        now = int(time.time())
        refused = harness.token(USER, iat=now, exp=now + 3660)
        accepted = harness.token(USER, iat=now, exp=now + 3600)
        statuses = [
            (
                await harness.client.get("/results", headers={"Authorization": f"Bearer {t}"})
            ).status_code
            for t in (refused, accepted)
        ]
        assert statuses == [401, 200]
