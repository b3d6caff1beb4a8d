"""Property-based API fuzzing: schemathesis drives the committed OpenAPI document, no 5xx allowed.

Bounded for CI: at most 20 examples per operation, no per-example deadline, no example database.
The app runs in-process on fakes (seeded with a result and an event so reads find something).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case

from gateway.export_openapi import OPENAPI_PATH
from tests.unit.gateway.fakes import Harness, build_harness, make_result

pytestmark = pytest.mark.requirement("RS-API-06")

SUBJECT = "fuzz-user"
schema = schemathesis.openapi.from_path(OPENAPI_PATH)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[FastAPI, str]:
    """One app for the whole run, with every role so schemathesis reaches every handler."""
    harness: Harness = build_harness(
        tmp_path_factory.mktemp("fuzz"),
        rate_limit_per_subject_per_minute=100_000,
        rate_limit_global_per_minute=100_000,
        max_upload_bytes=64 * 1024,
    )
    harness.results.add(make_result(SUBJECT))
    harness.lifecycle.add(SUBJECT)
    # Valid for the whole run, so requests get past authentication into the handlers.
    token = harness.token(
        SUBJECT,
        roles=["clinician", "service", "admin", "auditor"],
        exp=int(time.time()) + 3600,
    )
    return harness.app, token


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Case, fuzzed: tuple[FastAPI, str]) -> None:
    """No generated request, valid or not, makes the API answer 5xx."""
    app, token = fuzzed
    case.call_and_validate(
        app=app,
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error],
    )


async def test_fuzz_token_reaches_handlers(fuzzed: tuple[FastAPI, str]) -> None:
    """The control: the token used by the fuzzer is accepted, so handlers are exercised."""
    app, token = fuzzed
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/results", headers={"Authorization": f"Bearer {token}"})
    assert len(response.json()["items"]) == 1


def test_document_under_test_is_the_committed_one() -> None:
    """The fuzzed document is gateway/openapi.json (kept current by its own test)."""
    assert Path(schema.location or "").name == "openapi.json"
