"""EXPLAIN shows the API's main queries use the indexes, on a table with 20 000 rows."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Select
from sqlalchemy.dialects import postgresql

from bench.sink_events import BASE_TIME, sha
from schemas.api import ResultQuery, VerificationStatus
from sinks.migrate import upgrade_async
from sinks.repositories import LifecycleRepository, ResultsRepository, encode_cursor
from tests.integration.database_helpers import own_database

pytestmark = pytest.mark.requirement("RS-DB-04")

ROWS = 20_000
USERS = [f"user-{n}" for n in range(200)]
MODELS = [f"model-{n}" for n in range(10)]
STUDIES = [f"1.2.840.{n}" for n in range(2_000)]


def _rows(rng: random.Random) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    results, events = [], []
    for n in range(ROWS):
        event_id = uuid.UUID(int=rng.getrandbits(128))
        completed = BASE_TIME + timedelta(seconds=n)
        model = MODELS[n % len(MODELS)]
        results.append(
            (
                uuid.UUID(int=rng.getrandbits(128)),
                event_id,
                f"c-{n}",
                model,
                "1.0.0",
                sha(model),
                "onnxruntime",
                "CPUExecutionProvider",
                sha(str(n)),
                "[]",
                '{"p": 0.5}',
                '{"p": 0.7}',
                "positive",
                0.01,
                1,
                rng.choice(USERS),
                rng.choice(STUDIES),
                completed - timedelta(seconds=2),
                completed,
            )
        )
        events.append((event_id, "inferred", completed, model, "1.0.0"))
    return results, events


async def _load(url: str) -> None:
    await upgrade_async(url)
    results, events = _rows(random.Random(5))
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(
            "inference_results",
            records=results,
            columns=[
                "result_id", "event_id", "correlation_id", "model_name", "model_version",
                "weights_sha256", "runtime", "provider", "input_sha256", "verdicts",
                "thresholds", "scores", "decision", "inference_seconds", "batch_size",
                "requested_by", "study_instance_uid", "occurred_at", "completed_at",
            ],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "image_events",
            records=events,
            columns=["event_id", "state", "at", "model_name", "model_version"],
        )
        await connection.execute("ANALYZE inference_results; ANALYZE image_events")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def loaded_url(admin_database_url: str) -> Iterator[str]:
    """A migrated database of its own with 20 000 results and lifecycle rows, ANALYZEd."""
    with own_database(admin_database_url, prepare=_load) as url:
        yield url


async def _plan_indexes(url: str, statement: Select[Any]) -> set[tuple[str, str]]:
    """(node type, index name) of every index access in the plan of ``statement``."""
    sql = str(
        statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )
    connection = await asyncpg.connect(url)
    try:
        raw = await connection.fetchval("EXPLAIN (FORMAT JSON) " + sql)
    finally:
        await connection.close()
    found: set[tuple[str, str]] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add((node["Node Type"], node["Index Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(raw)[0]["Plan"])
    return found


INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def _uses(found: set[tuple[str, str]], index: str) -> bool:
    return any(kind in INDEX_SCANS and name == index for kind, name in found)


class TestQueryPlans:
    """Each main API query is answered from its index, not a sequential scan."""

    async def test_user_page_uses_user_index(self, loaded_url: str) -> None:
        """A user's newest results come from ix_inference_results_user_completed."""
        statement = ResultsRepository.list_statement(ResultQuery(limit=50), user_id="user-7")
        found = await _plan_indexes(loaded_url, statement)
        assert _uses(found, "ix_inference_results_user_completed"), found

    async def test_next_page_uses_user_index(self, loaded_url: str) -> None:
        """Following a cursor with a time filter still walks the user index."""
        cursor = encode_cursor(BASE_TIME + timedelta(seconds=15_000), uuid.uuid4())
        statement = ResultsRepository.list_statement(
            ResultQuery(limit=50, cursor=cursor, status=VerificationStatus.UNVERIFIED),
            user_id="user-7",
        )
        found = await _plan_indexes(loaded_url, statement)
        assert _uses(found, "ix_inference_results_user_completed"), found

    async def test_model_listing_uses_model_index(self, loaded_url: str) -> None:
        """Results of one model, newest first, come from ix_inference_results_model_completed."""
        statement = ResultsRepository.list_statement(
            ResultQuery(model_name="model-3", limit=50), user_id=None
        )
        found = await _plan_indexes(loaded_url, statement)
        assert _uses(found, "ix_inference_results_model_completed"), found

    async def test_study_listing_uses_study_index(self, loaded_url: str) -> None:
        """Results of one study come from ix_inference_results_study."""
        statement = ResultsRepository.list_statement(
            ResultQuery(study_uid="1.2.840.42"), user_id=None
        )
        found = await _plan_indexes(loaded_url, statement)
        assert _uses(found, "ix_inference_results_study"), found

    async def test_event_lookup_uses_natural_key(self, loaded_url: str) -> None:
        """Results of one event come from the natural-key unique index."""
        statement = ResultsRepository.event_statement(uuid.uuid4())
        found = await _plan_indexes(loaded_url, statement)
        assert _uses(found, "uq_inference_results_natural_key"), found

    async def test_lifecycle_uses_event_index(self, loaded_url: str) -> None:
        """One event's lifecycle comes from the (event, state, model) unique index."""
        statement = LifecycleRepository.lifecycle_statement(uuid.uuid4())
        found = await _plan_indexes(loaded_url, statement)
        assert _uses(found, "uq_image_events_event_state_model"), found
