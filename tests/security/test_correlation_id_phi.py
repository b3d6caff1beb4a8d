"""No PHI-shaped correlation id reaches a log, header, topic, table, audit record or response.

Issue 16, item 8: any ``X-Correlation-ID`` matching ``[A-Za-z0-9_.-]{1,64}`` (``MRN-55667788``,
``Pembertonwhistle-Agatha``) used to be kept unmasked everywhere. Now a supplied id is kept only
as a UUID or hex digest (``schemas/correlation.py``); these canary tests prove it end to end:

* **API** (the app with in-memory fakes): the canaries sent as ``X-Correlation-ID`` to a public,
  a refused, a publishing, a reading and a failing request; responses, published messages and
  headers, audit actions and the JSON log lines are searched.
* **Pipeline** (the worker users run, every stage, on the shared broker and database): arrival
  events carry the canaries in their Kafka ``correlation_id`` header — one image is stored, one
  rejected, one poison message dead-lettered. Every record of every topic (key, value, headers),
  every row of ``inference_results``, ``image_events`` and ``audit_log``, the checkpoint file
  and the JSON log lines are searched, as text, in either case and base64-encoded (dead letters
  keep headers as base64). The replacement ids are checked too: each message's outcomes, result
  row and audit records share the id derived from the arrival's position.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import structlog
from aiokafka import AIOKafkaProducer

import app
from observability.logging import configure_logging
from observability.phi import REDACTED_ID
from schemas.correlation import (
    CORRELATION_ID_HEADER,
    accept_correlation_id,
    derived_correlation_id,
)
from schemas.events import DeadLetter, ImageArrived
from schemas.settings import SAMPLES_DIR, LoggingSettings, Settings
from sinks.migrate import upgrade_async
from sinks.provisioning import create_database, drop_database, url_for_database
from streams.audit.files import checkpoint_file_for
from streams.kafka import KafkaClientConfig, read_topic
from streams.topics import TopicNames
from tests.integration.settings_support import isolated_settings
from tests.unit.gateway.fakes import Harness, build_harness

# One loop for the module: the pipeline fixture is module-scoped.
on_module_loop = pytest.mark.asyncio(loop_scope="module")

CANARIES = ("MRN-55667788", "Pembertonwhistle-Agatha", "Quillfeather^Ottoline")
SAMPLES = SAMPLES_DIR
# Bounded: the pipeline settles in seconds here; the bounds only stop a hung run.
STARTUP_TIMEOUT_SECONDS = 120
SETTLE_TIMEOUT_SECONDS = 120


def forms(canary: str) -> set[str]:
    """How a canary could appear: as sent, in either case, or base64-encoded."""
    encoded = base64.b64encode(canary.encode()).decode().rstrip("=")
    return {canary, canary.lower(), canary.upper(), encoded}


def leaked(text: str) -> list[str]:
    """The canary forms found in ``text``."""
    return sorted(form for canary in CANARIES for form in forms(canary) if form in text)


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``text``."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """radstream's JSON logging (masker included) into a buffer; undone afterwards."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json", level="DEBUG"), stream=stream)
    yield stream
    _reset_logging()


def _reset_logging() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_radstream_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


# ----------------------------------------------------------------------------- the API
@on_module_loop
class TestApiCanaries:
    @pytest.mark.parametrize("canary", CANARIES)
    async def test_header_canary_leaves_no_trace(
        self, tmp_path: Path, logs: io.StringIO, canary: str
    ) -> None:
        """A PHI-shaped X-Correlation-ID is in no response, message, audit action or log line."""
        harness: Harness = build_harness(tmp_path)
        sent = {"X-Correlation-ID": canary}
        client = harness.client
        image = {"source": "r1", "image_uri": (harness.root / "a.dcm").as_uri()}
        responses = [
            await client.get("/healthz", headers=sent),
            await client.get("/models", headers=sent),  # refused: no token
            await client.post(
                "/infer", json=image, headers={**harness.auth(roles=["service"]), **sent}
            ),
            await client.get("/results", headers={**harness.auth(), **sent}),
        ]
        harness.results.fail_with = RuntimeError("boom")
        responses.append(await client.get("/results", headers={**harness.auth(), **sent}))
        assert [r.status_code for r in responses] == [200, 401, 202, 200, 500]
        assert harness.publisher.messages
        assert harness.audit.actions
        seen = "\n".join(
            [f"{r.headers.raw!r}\n{r.text}" for r in responses]
            + [
                f"{m.key!r}{m.headers!r}{m.value.model_dump_json()}"
                for m in harness.publisher.messages
            ]
            + [a.model_dump_json() for a in harness.audit.actions]
            + [logs.getvalue()]
        )
        assert leaked(seen) == []

    async def test_replacement_happens_where_the_id_enters(
        self, tmp_path: Path, logs: io.StringIO
    ) -> None:
        """Every id handed out is canonical, and no log line needed the masker's fallback."""
        harness = build_harness(tmp_path)
        harness.results.fail_with = RuntimeError("boom")
        response = await harness.client.get(
            "/results", headers={**harness.auth(), "X-Correlation-ID": CANARIES[0]}
        )
        handed_out = response.headers["x-correlation-id"]
        assert accept_correlation_id(handed_out) == handed_out
        assert response.json()["correlation_id"] == handed_out
        failures = [line for line in json_lines(logs.getvalue()) if "correlation_id" in line]
        assert failures
        assert {line["correlation_id"] for line in failures} == {handed_out}
        assert REDACTED_ID not in logs.getvalue()


# ----------------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class Sent:
    """One canary arrival: what it was, where it landed on ``images.arrived``."""

    canary: str
    event_id: uuid.UUID | None
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """One Kafka record as read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def text(self) -> str:
        """Key, value and headers as one searchable string."""
        parts = [self.key or b"", self.value or b""] + [k.encode() + v for k, v in self.headers]
        return "\n".join(part.decode("utf-8", "replace") for part in parts)

    def correlation_header(self) -> str | None:
        """The record's correlation header, as text."""
        values = [v.decode() for k, v in self.headers if k == CORRELATION_ID_HEADER]
        return values[0] if values else None


@dataclass(frozen=True)
class PipelineRun:
    """What the canary run sent and everything it left behind."""

    settings: Settings
    stored: Sent
    rejected: Sent
    poison: Sent
    records: list[Record]
    rows: dict[str, list[dict[str, Any]]]
    checkpoints: str
    logs: str

    def sent(self) -> tuple[Sent, Sent, Sent]:
        """The three canary arrivals."""
        return self.stored, self.rejected, self.poison

    def derived(self, sent: Sent) -> str:
        """The id every reader derives for a canary arrival (its position on the topic)."""
        arrived = TopicNames(self.settings.topic_prefix).arrived
        return derived_correlation_id(arrived, sent.partition, sent.offset)

    def audit_records(self) -> list[dict[str, Any]]:
        """The audit table's records, decoded."""
        return [json.loads(row["record"]) for row in self.rows["audit_log"]]


async def publish_canaries(bootstrap: str, topics: TopicNames) -> tuple[Sent, Sent, Sent]:
    """An image to store, one to reject and a poison message, each with a canary header."""
    stored = ImageArrived(
        source="router-1", image_uri=(SAMPLES / "raster/ct_64.png").as_uri(), modality="CT"
    )
    rejected = ImageArrived(source="router-1", image_uri=(SAMPLES / "bad/empty.dcm").as_uri())
    messages: list[tuple[ImageArrived | None, bytes, str]] = [
        (stored, stored.model_dump_json().encode(), CANARIES[0]),
        (rejected, rejected.model_dump_json().encode(), CANARIES[2]),
        (None, b'{"source": "router-1", "not json', CANARIES[1]),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    sent: list[Sent] = []
    try:
        for event, value, canary in messages:
            meta = await producer.send_and_wait(
                topics.arrived,
                value=value,
                key=event.message_key() if event else b"poison",
                headers=[(CORRELATION_ID_HEADER, canary.encode())],
            )
            sent.append(
                Sent(canary, event.event_id if event else None, meta.partition, meta.offset)
            )
    finally:
        await producer.stop()
    return sent[0], sent[1], sent[2]


async def table_rows(database_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a correlation id is kept in, as text-valued dicts."""
    connection = await asyncpg.connect(database_url)
    try:
        return {
            table: [
                {k: str(v) for k, v in row.items()}
                for row in await connection.fetch(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
            ]
            for table in ("inference_results", "image_events", "audit_log")
        }
    finally:
        await connection.close()


def settled(run_rows: dict[str, list[dict[str, Any]]], stored: Sent, rejected: Sent) -> bool:
    """Whether the last hop (the audit table) has the stored, rejected and poison outcomes."""
    records = [json.loads(row["record"]) for row in run_rows["audit_log"]]
    kinds = {(r["event_type"], r["object"].get("event_id")) for r in records}
    return (
        any(row["event_id"] == str(stored.event_id) for row in run_rows["inference_results"])
        and ("INFERENCE_COMPLETED", str(stored.event_id)) in kinds
        and ("IMAGE_REJECTED", str(rejected.event_id)) in kinds
        and any(kind == "DEAD_LETTERED" for kind, _ in kinds)
    )


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every committed record of ``topic`` (the dlq tooling's read-to-end reader)."""
    content = await read_topic(KafkaClientConfig(bootstrap), topic)
    return [
        Record(topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
        for r in content.all_records()
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pipeline(
    kafka_bootstrap: str,
    admin_database_url: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PipelineRun]:
    """Run every stage over the canary arrivals until the audit table has their outcomes."""
    tmp = tmp_path_factory.mktemp("correlation-canaries")
    name = f"radstream_test_{uuid.uuid4().hex[:12]}"
    await create_database(admin_database_url, name)
    database_url = url_for_database(admin_database_url, name)
    settings = isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=f"rstest.{run_id}.corr-{uuid.uuid4().hex[:6]}.",
        storage_roots=(SAMPLES,),
        audit_dir=tmp,
    )
    topics = TopicNames(settings.topic_prefix)
    stream = io.StringIO()
    try:
        await upgrade_async(database_url)
        configure_logging(LoggingSettings(format="json", level="DEBUG"), stream=stream)
        stop, started = asyncio.Event(), asyncio.Event()
        worker = asyncio.create_task(
            app.run_worker(
                settings, app.default_stages(settings), stop, started=started, serve_http=False
            )
        )
        try:
            await asyncio.wait_for(started.wait(), STARTUP_TIMEOUT_SECONDS)
            stored, rejected, poison = await publish_canaries(kafka_bootstrap, topics)
            deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_SECONDS
            rows = await table_rows(database_url)
            while not settled(rows, stored, rejected):
                assert asyncio.get_running_loop().time() < deadline, "the pipeline did not settle"
                await asyncio.sleep(0.5)
                rows = await table_rows(database_url)
        finally:
            stop.set()
            await worker
        records = [
            r for topic in topics.all().values() for r in await read_all(kafka_bootstrap, topic)
        ]
        yield PipelineRun(
            settings,
            stored,
            rejected,
            poison,
            records,
            rows,
            # The chain's own file: a chain is named by its audit topic (streams.audit.files).
            checkpoint_file_for(
                settings.audit.checkpoint_file, TopicNames(settings.topic_prefix).audit
            ).read_text(),
            stream.getvalue(),
        )
    finally:
        _reset_logging()
        await drop_database(admin_database_url, name)


@on_module_loop
class TestPipelineCanaries:
    async def test_no_canary_on_any_topic(self, pipeline: PipelineRun) -> None:
        """No record radstream wrote, on any topic (key, value, headers), holds a canary."""
        arrived = TopicNames(pipeline.settings.topic_prefix).arrived
        inputs = {(arrived, s.partition, s.offset) for s in pipeline.sent()}
        written = [r for r in pipeline.records if (r.topic, r.partition, r.offset) not in inputs]
        assert len(written) > 10  # the scan covers real traffic
        assert leaked("\n".join(r.text() for r in written)) == []
        # ... and the router's own records, which are excluded, are what was sent
        assert len(pipeline.records) - len(written) == len(inputs)

    async def test_no_canary_in_any_table_or_checkpoint(self, pipeline: PipelineRun) -> None:
        """Results, lifecycle and audit rows and the checkpoint file hold no canary."""
        assert all(pipeline.rows[table] for table in pipeline.rows)
        corpus = "\n".join(str(row) for rows in pipeline.rows.values() for row in rows)
        assert leaked(corpus + pipeline.checkpoints) == []

    async def test_no_canary_in_any_log_line(self, pipeline: PipelineRun) -> None:
        """No log line holds a canary, and none needed the masker to hide one."""
        assert json_lines(pipeline.logs)
        assert leaked(pipeline.logs) == []
        assert REDACTED_ID not in pipeline.logs

    async def test_stored_image_is_joined_by_its_replacement_id(
        self, pipeline: PipelineRun
    ) -> None:
        """The result row, the derived topics' headers and every audit record share one id."""
        expected = pipeline.derived(pipeline.stored)
        result = next(
            r
            for r in pipeline.rows["inference_results"]
            if r["event_id"] == str(pipeline.stored.event_id)
        )
        assert result["correlation_id"] == expected
        audited = {
            r["event_type"]: r["correlation_id"]
            for r in pipeline.audit_records()
            if r["object"].get("event_id") == str(pipeline.stored.event_id)
        }
        assert set(audited) >= {"IMAGE_ARRIVED", "IMAGE_VALIDATED", "INFERENCE_COMPLETED"}
        assert set(audited.values()) == {expected}
        topics = TopicNames(pipeline.settings.topic_prefix)
        downstream = [
            r
            for r in pipeline.records
            if r.topic in {topics.validated, topics.results}
            and str(pipeline.stored.event_id).encode() in (r.value or b"")
        ]
        assert {r.topic for r in downstream} == {topics.validated, topics.results}
        assert {r.correlation_header() for r in downstream} == {expected}

    async def test_rejection_carries_the_replacement_id(self, pipeline: PipelineRun) -> None:
        """The rejected image's outcome and audit record carry the id of its arrival position."""
        expected = pipeline.derived(pipeline.rejected)
        topics = TopicNames(pipeline.settings.topic_prefix)
        rejections = [
            r
            for r in pipeline.records
            if r.topic == topics.rejected
            and str(pipeline.rejected.event_id).encode() in (r.value or b"")
        ]
        assert [r.correlation_header() for r in rejections] == [expected]
        audited = [
            r["correlation_id"]
            for r in pipeline.audit_records()
            if r["object"].get("event_id") == str(pipeline.rejected.event_id)
        ]
        assert audited
        assert set(audited) == {expected}

    async def test_dead_letter_keeps_the_replacement_not_the_original(
        self, pipeline: PipelineRun
    ) -> None:
        """The poison message's dead letter, its stored headers and its audit record agree."""
        expected = pipeline.derived(pipeline.poison)
        topics = TopicNames(pipeline.settings.topic_prefix)
        letters = [
            DeadLetter.model_validate_json(r.value or b"")
            for r in pipeline.records
            if r.topic == topics.deadletter
        ]
        letter = next(
            d
            for d in letters
            if d.source_offset == pipeline.poison.offset
            and d.source_partition == pipeline.poison.partition
        )
        assert letter.correlation_id == expected
        stored_headers = {h.key: base64.b64decode(h.value_b64).decode() for h in letter.headers}
        assert stored_headers[CORRELATION_ID_HEADER] == expected
        audited = [
            r["correlation_id"]
            for r in pipeline.audit_records()
            if r["object"].get("dead_letter_id") == str(letter.dead_letter_id)
        ]
        assert audited == [expected]

    async def test_outcome_log_lines_name_the_replacement_ids(self, pipeline: PipelineRun) -> None:
        """Each canary's outcome line is logged under the id derived from its position."""
        arrived = TopicNames(pipeline.settings.topic_prefix).arrived
        outcome_ids = {
            (line.get("partition"), line.get("offset")): line.get("correlation_id")
            for line in json_lines(pipeline.logs)
            if line.get("topic") == arrived
            and line.get("event")
            in {"message_processed", "image_rejected", "message_dead_lettered"}
        }
        for sent in pipeline.sent():
            assert outcome_ids[(sent.partition, sent.offset)] == pipeline.derived(sent)


def test_canary_forms_are_searched() -> None:
    """The search finds each canary as sent, in another case and base64-encoded."""
    for canary in CANARIES:
        assert leaked(f"x {canary} y")
        assert leaked(canary.lower())
        assert leaked(base64.b64encode(canary.encode()).decode())
    assert leaked("0a" * 16) == []
