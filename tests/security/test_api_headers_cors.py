"""Security headers on every answer, the CORS allow-list, correlation ids and rate limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import create_app
from schemas.correlation import accept_correlation_id
from tests.unit.gateway.fakes import (
    FakeAudit,
    FakeLifecycle,
    FakeModels,
    FakePublisher,
    FakeResults,
    Harness,
    build_harness,
    settings_for,
)

pytestmark = pytest.mark.requirement("RS-API-05", "RS-API-04")

ALLOWED = "https://viewer.hospital.example"
CORR = "c7" * 16
EXPECTED_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cache-control": "no-store",
}


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The API allowing one CORS origin, with small per-subject and failed-auth rate limits."""
    return build_harness(
        tmp_path,
        cors_allow_origins=(ALLOWED,),
        rate_limit_per_subject_per_minute=3,
        rate_limit_global_per_minute=100,
        rate_limit_failed_auth_per_address_per_minute=3,
    )


class TestSecurityHeaders:
    """Every response carries the hardening headers."""

    @pytest.mark.parametrize("path", ["/healthz", "/models", "/results", "/no-such-route"])
    async def test_headers_on_success_and_error(self, harness: Harness, path: str) -> None:
        """200s, 401s and 404s all carry HSTS, nosniff, no-referrer, CSP and no-store."""
        response = await harness.client.get(path)
        for name, value in EXPECTED_HEADERS.items():
            assert response.headers[name] == value

    async def test_result_response_is_not_cacheable(self, harness: Harness) -> None:
        """An authenticated results page is marked no-store."""
        response = await harness.client.get("/results", headers=harness.auth())
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"

    async def test_no_interactive_docs_are_served(self, harness: Harness) -> None:
        """Swagger UI and ReDoc are off (they would need scripts CSP forbids)."""
        assert (await harness.client.get("/docs")).status_code == 404
        assert (await harness.client.get("/redoc")).status_code == 404


class TestCors:
    """Only listed origins get CORS permission; others are never reflected."""

    async def test_allowed_origin_is_echoed(self, harness: Harness) -> None:
        """A listed origin gets Access-Control-Allow-Origin naming it."""
        response = await harness.client.get("/healthz", headers={"Origin": ALLOWED})
        assert response.headers["access-control-allow-origin"] == ALLOWED

    async def test_disallowed_origin_is_not_reflected(self, harness: Harness) -> None:
        """Another origin gets no Access-Control-Allow-Origin at all."""
        response = await harness.client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers

    async def test_preflight_from_disallowed_origin_is_refused(self, harness: Harness) -> None:
        """A preflight from another origin is not granted."""
        response = await harness.client.options(
            "/results",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in response.headers

    async def test_preflight_from_allowed_origin_is_granted(self, harness: Harness) -> None:
        """A preflight from the listed origin is granted for the Authorization header."""
        response = await harness.client.options(
            "/results",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert response.headers["access-control-allow-origin"] == ALLOWED

    def test_wildcard_origin_is_refused_at_startup(self, tmp_path: Path) -> None:
        """A '*' origin is a configuration error, not a permissive API."""
        with pytest.raises(ValueError, match="explicit origins"):
            create_app(
                settings_for(tmp_path, cors_allow_origins=("*",)),
                publisher=FakePublisher(),
                results=FakeResults(),
                lifecycle=FakeLifecycle(),
                models=FakeModels(),
                audit=FakeAudit(),
            )


class TestCorrelationId:
    """Every response names its correlation id; client ids are kept only as UUIDs or digests."""

    @pytest.mark.parametrize(
        ("supplied", "kept"),
        [
            ("3F2504E0-4F89-11D3-9A0C-0305E82C3301", "3f2504e04f8911d39a0c0305e82c3301"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("ab" * 32, "ab" * 32),
        ],
    )
    async def test_uuid_or_digest_is_returned_canonical(
        self, harness: Harness, supplied: str, kept: str
    ) -> None:
        """A UUID or hex digest X-Correlation-ID comes back in canonical form."""
        response = await harness.client.get("/healthz", headers={"X-Correlation-ID": supplied})
        assert response.headers["x-correlation-id"] == kept

    @pytest.mark.parametrize(
        "bad",
        [
            "has space",
            "x" * 65,
            "<script>",
            "a\\b",
            "req-42.a_b",
            "MRN-55667788",
            "Pembertonwhistle-Agatha",
            "55667788",
            "0" * 32,
        ],
    )
    async def test_other_client_id_is_replaced(self, harness: Harness, bad: str) -> None:
        """Any other id (text, a record number, unsafe characters) is replaced by a fresh one."""
        response = await harness.client.get("/healthz", headers={"X-Correlation-ID": bad})
        replaced = response.headers["x-correlation-id"]
        assert replaced != bad
        assert accept_correlation_id(replaced) == replaced

    async def test_generated_when_absent(self, harness: Harness) -> None:
        """Without a client id, one is generated."""
        response = await harness.client.get("/healthz")
        generated = response.headers["x-correlation-id"]
        assert accept_correlation_id(generated) == generated

    async def test_error_body_names_the_same_id(self, harness: Harness) -> None:
        """The error body's correlation_id equals the response header."""
        response = await harness.client.get("/models", headers={"X-Correlation-ID": CORR})
        assert response.json()["correlation_id"] == CORR

    async def test_published_event_carries_the_id(self, harness: Harness) -> None:
        """The correlation id travels as the Kafka header of the published event."""
        await harness.client.post(
            "/infer",
            json={"source": "r1", "image_uri": (harness.root / "a.dcm").as_uri()},
            headers={**harness.auth(roles=["service"]), "X-Correlation-ID": CORR},
        )
        assert harness.publisher.messages[0].headers == [("correlation_id", CORR.encode())]


class TestRateLimits:
    """Per-subject and global token buckets answer 429 with Retry-After."""

    async def test_fourth_request_in_a_minute_is_429(self, harness: Harness) -> None:
        """With 3 per minute, the fourth request is refused with RATE_LIMITED."""
        statuses = [
            (await harness.client.get("/models", headers=harness.auth())).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]

    async def test_429_has_retry_after(self, harness: Harness) -> None:
        """The 429 says how many whole seconds to wait (one token refills in 20 s)."""
        for _ in range(3):
            await harness.client.get("/models", headers=harness.auth())
        response = await harness.client.get("/models", headers=harness.auth())
        assert response.headers["retry-after"] == "20"
        assert response.json()["code"] == "RATE_LIMITED"

    async def test_bucket_refills_with_time(self, harness: Harness) -> None:
        """After the Retry-After delay the subject may call again."""
        for _ in range(4):
            await harness.client.get("/models", headers=harness.auth())
        harness.clock.advance(20)
        response = await harness.client.get("/models", headers=harness.auth())
        assert response.status_code == 200

    async def test_limit_is_per_subject(self, harness: Harness) -> None:
        """One subject's exhaustion does not throttle another subject."""
        for _ in range(4):
            await harness.client.get("/models", headers=harness.auth("dr-a"))
        response = await harness.client.get("/models", headers=harness.auth("dr-b"))
        assert response.status_code == 200

    async def test_global_limit_spans_subjects(self, tmp_path: Path) -> None:
        """The global bucket throttles everyone once it is empty."""
        harness = build_harness(
            tmp_path, rate_limit_per_subject_per_minute=100, rate_limit_global_per_minute=2
        )
        statuses = [
            (await harness.client.get("/models", headers=harness.auth(f"u{i}"))).status_code
            for i in range(3)
        ]
        assert statuses == [200, 200, 429]

    async def test_failed_authentication_is_throttled(self, harness: Harness) -> None:
        """Bad tokens from one address are rate limited too (no fast token guessing)."""
        statuses = [
            (await harness.client.get("/models", headers={"Authorization": "Bearer x"})).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
