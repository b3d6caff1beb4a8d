"""The HTTP API over the real pipeline: submit → result visible → verify → audit trail.

The gateway is wired exactly as ``radstream api`` wires it (``app.build_api``) and the worker
runs every stage; nothing is faked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

import app
from gateway.tokens import issue_token
from schemas.audit import AuditRecord
from schemas.settings import Settings
from streams.audit.checkpoints import TrustedKeys
from streams.audit.files import load_public_key
from streams.audit.io import read_audit_topic
from streams.kafka import KafkaClientConfig, ensure_topics
from streams.topics import TopicNames
from tests.integration.settings_support import isolated_settings, phantom_storage

pytestmark = pytest.mark.requirement("RS-API-01", "RS-API-07", "RS-AUD-01", "RS-DB-04")

# Bounded waits: on this machine the pipeline stores a result within a few seconds.
RESULT_TIMEOUT_SECONDS = 60


@pytest.fixture
def api_settings(
    kafka_bootstrap: str, pipeline_database_url: str, topic_prefix: str, tmp_path: Path
) -> Settings:
    """Isolated topics, groups and audit key; storage root with one CT image in it."""
    return isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=pipeline_database_url,
        topic_prefix=topic_prefix,
        storage_roots=(phantom_storage(tmp_path),),
        audit_dir=tmp_path,
    )


@pytest.fixture
async def running(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Worker with every stage in the background, API client in front."""
    await ensure_topics(KafkaClientConfig.from_settings(api_settings), api_settings.topic_prefix)
    stop, started = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(
            api_settings, app.default_stages(api_settings), stop, started=started, serve_http=False
        )
    )
    await asyncio.wait_for(started.wait(), RESULT_TIMEOUT_SECONDS)
    try:
        async with AsyncExitStack() as stack:
            api = await app.build_api(stack, api_settings)
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client
    finally:
        stop.set()
        await worker


def bearer(settings: Settings, subject: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, subject, [role], 600)}"}


async def poll(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], done: Any
) -> dict[str, Any]:
    """GET ``url`` until ``done(body)`` holds (bounded)."""
    body: dict[str, Any] = {}
    for _ in range(RESULT_TIMEOUT_SECONDS * 4):
        response = await client.get(url, headers=headers)
        if response.status_code == 200:
            body = response.json()
            if done(body):
                return body
        await asyncio.sleep(0.25)
    return body


async def test_submit_read_verify_and_audit(
    running: httpx.AsyncClient, api_settings: Settings
) -> None:
    """A clinician's submission becomes a stored, verifiable result with an audit trail."""
    client = running
    clinician = bearer(api_settings, "dr-x", "clinician")
    image = (api_settings.storage_roots[0] / "ct.dcm").as_uri()
    submitted = await client.post(
        "/infer",
        json={"source": "router-1", "image_uri": image, "model_ids": ["lesion-detector"]},
        headers=clinician,
    )
    assert submitted.status_code == 202, submitted.text
    event_id = submitted.json()["event_id"]

    lifecycle = await poll(
        client,
        f"/events/{event_id}",
        clinician,
        lambda b: {"arrived", "stored"} <= {e["state"] for e in b["entries"]},
    )
    states = [e["state"] for e in lifecycle["entries"]]
    assert (states[0], states[-1]) == ("arrived", "stored"), states
    assert states.count("arrived") == 1

    page = await poll(client, "/results", clinician, lambda b: bool(b["items"]))
    (result,) = page["items"]
    assert result["event_id"] == event_id
    assert (result["model"]["name"], result["decision"]) == ("lesion-detector", "lesion")
    assert len(result["input_sha256"]) == 64

    other = bearer(api_settings, "dr-y", "clinician")
    assert (await client.get(f"/results/{result['result_id']}", headers=other)).status_code == 404
    assert (await client.get(f"/events/{event_id}", headers=other)).status_code == 404

    verify = await client.post(
        f"/results/{result['result_id']}/verify", json={"note": "agree"}, headers=clinician
    )
    assert verify.status_code == 200, verify.text
    assert verify.json()["status"] == "verified"
    again = await client.post(
        f"/results/{result['result_id']}/verify", json={"note": "again"}, headers=clinician
    )
    assert again.status_code == 409
    assert again.json()["code"] == "RESULT_ALREADY_VERIFIED"

    models = await client.get("/models", headers=clinician)
    assert {m["version"] for m in models.json()["models"]} >= {"1.0.0", "1.1.0"}

    wanted = {"API_SUBMIT", "API_READ", "API_VERIFY", "INFERENCE_COMPLETED"}
    seen: set[str] = set()
    topic = TopicNames(api_settings.topic_prefix).audit
    trusted = TrustedKeys.of(load_public_key(api_settings.audit.signing_key_file))
    for _ in range(RESULT_TIMEOUT_SECONDS):
        content = await read_audit_topic(
            KafkaClientConfig.from_settings(api_settings), topic, trusted
        )
        seen = {
            str(r.event_type)
            for part in content.values()
            for r in part.records
            if isinstance(r, AuditRecord)
        }
        if wanted <= seen:
            break
        await asyncio.sleep(1)
    assert wanted <= seen
