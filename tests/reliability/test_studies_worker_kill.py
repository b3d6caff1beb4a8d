"""SIGKILL a real `radstream worker --stages studies` mid-study: the next one finishes it, once.

The worker runs as operators run it (``python -m cli worker``, its own process group) on the
real broker and a fresh migrated database. Half of a 40-instance study (arrivals and their
results, interleaved) is published; as soon as the worker has stored part of it the process is
killed with SIGKILL (no shutdown hook, no final commit, possibly mid-transaction or with events
in the outbox). A new worker in the same consumer group is started, the other half is published
(with a duplicate arrival), and the study must then complete exactly once with one study result
that counts all 40 instances and all 40 results: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess  # nosec B404 - starts radstream's own command line, as operators do
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.events import ImageArrived, InferenceCompleted, ModelRef
from schemas.studies import StudyCompleted, StudyResult
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.topics import TopicKey, TopicNames
from tests.integration.database_helpers import own_database
from tests.reliability.worker_process import start_worker

pytestmark = pytest.mark.requirement("RS-STU-01", "RS-STU-02", "RS-G-03")

INSTANCES = 40
# Bounded waits: a worker starts in seconds; a busy shared machine gets generous margins.
START_SECONDS = 120.0
STEP_SECONDS = 120.0
SHA = "b" * 64
MODEL = ModelRef(
    name="lesion-detector", version="1.2.0", weights_sha256=SHA, runtime="onnx", provider="cpu"
)


def log_text(log_path: Path) -> str:
    return log_path.read_text(errors="replace")


async def wait_started(worker: subprocess.Popen[bytes], log_path: Path, mark: int) -> None:
    """Until the worker logs ``worker_started`` after character ``mark`` of its log."""
    deadline = time.monotonic() + START_SECONDS
    while "worker_started" not in (await asyncio.to_thread(log_text, log_path))[mark:]:
        assert worker.poll() is None, (await asyncio.to_thread(log_text, log_path))[-3000:]
        assert time.monotonic() < deadline, "the worker did not start"
        await asyncio.sleep(0.5)


async def wait_for_rows(
    db: asyncpg.Connection, query: str, worker: subprocess.Popen[bytes], what: str
) -> None:
    """Until ``query`` counts a row (the worker must stay alive meanwhile)."""
    deadline = time.monotonic() + STEP_SECONDS
    while not await db.fetchval(query):
        assert worker.poll() is None, f"the worker exited before {what}"
        assert time.monotonic() < deadline, f"no {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def database_url(admin_database_url: str) -> Iterator[str]:
    """A fresh migrated database of this test's own, dropped after it."""
    with own_database(admin_database_url) as url:
        yield url


def study_messages(study: str) -> list[tuple[TopicKey, ImageArrived | InferenceCompleted]]:
    """Each instance's arrival (declaring the study's size) followed by its model result."""
    messages: list[tuple[TopicKey, ImageArrived | InferenceCompleted]] = []
    for index in range(INSTANCES):
        arrival = ImageArrived(
            source="router-1",
            image_uri=f"file:///images/{index}.dcm",
            study_instance_uid=study,
            series_instance_uid=f"{study}.1",
            sop_instance_uid=f"{study}.1.{index + 1}",
            modality="CT",
            expected_study_instances=INSTANCES,
        )
        result = InferenceCompleted(
            event_id=arrival.event_id,
            correlation_id=arrival.event_id.hex,
            occurred_at=arrival.occurred_at,
            model=MODEL,
            input_sha256=SHA,
            thresholds={"lesion": 0.5},
            scores={"lesion": 0.1 + index / 100},
            decision="no_finding",
            inference_seconds=0.01,
            study_instance_uid=study,
            sop_instance_uid=arrival.sop_instance_uid,
        )
        messages += [(TopicKey.IMAGES_ARRIVED, arrival), (TopicKey.INFERENCE_RESULTS, result)]
    return messages


async def publish(
    kafka: KafkaClientConfig,
    names: TopicNames,
    messages: Sequence[tuple[TopicKey, ImageArrived | InferenceCompleted]],
) -> None:
    async with KafkaPublisher(kafka, names) as publisher:
        for key, event in messages:
            await publisher.publish(key, event.message_key(), event)


async def published(bootstrap: str, topic: str) -> list[bytes]:
    """Every message on ``topic`` so far (a group-less read from the start)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        while batch := await consumer.getmany(timeout_ms=2000):
            values += [record.value for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    return values


async def test_worker_killed_mid_study_resumes_with_nothing_lost(
    kafka_bootstrap: str,
    kafka: KafkaClientConfig,
    topic_prefix: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Kill -9 with half a study stored, restart, send the rest: one completion, one result."""
    names = TopicNames(topic_prefix)
    await ensure_topics(kafka, topic_prefix, partitions_override=2)
    env = os.environ | {
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_DATABASE_URL": database_url,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": f"rstest-studykill-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_LOGGING__FORMAT": "json",
        "RADSTREAM_WORKER_DATA_DIR": str(tmp_path / "faust"),
        # Small batches, so the kill lands between batches and inside one.
        "RADSTREAM_STUDIES__BATCH_SIZE": "3",
        # Complete on the declared count only: no quiet period may end the study early.
        "RADSTREAM_STUDIES__QUIET_PERIOD_SECONDS": "3600",
        "RADSTREAM_STUDIES__QUIET_PERIOD_BY_MODALITY": '{"CT": 3600}',
    }
    study = f"1.2.826.0.1.{uuid.uuid4().int % 10**12}"
    messages = study_messages(study)
    first, rest = messages[:INSTANCES], messages[INSTANCES:]
    log_path = tmp_path / "worker.log"
    db = await asyncpg.connect(database_url)
    try:
        worker = start_worker("studies", env, log_path)
        try:
            await wait_started(worker, log_path, 0)
            await publish(kafka, names, first)
            await wait_for_rows(db, "SELECT count(*) FROM study_instances", worker, "instance")
        finally:
            os.killpg(worker.pid, signal.SIGKILL)  # no shutdown hook, no final commit
            worker.wait(timeout=30)
        stored = await db.fetchrow(
            "SELECT (SELECT count(*) FROM study_instances) AS instances,"
            " (SELECT count(*) FROM study_outcomes) AS outcomes"
        )
        # Part of the study was stored, and the kill interrupted the first half's 40 messages.
        assert stored["instances"] > 0
        assert stored["instances"] + stored["outcomes"] < len(first)
        assert await db.fetchval("SELECT count(*) FROM study_results") == 0

        mark = len(await asyncio.to_thread(log_text, log_path))
        restarted = start_worker("studies", env, log_path)
        try:
            await wait_started(restarted, log_path, mark)
            duplicate = first[4]  # an arrival sent again: recognised, not counted
            await publish(kafka, names, [*rest, duplicate])
            await wait_for_rows(db, "SELECT count(*) FROM study_results", restarted, "study result")
            # The outbox is published right after the commit: wait until it is empty.
            await wait_for_rows(
                db, "SELECT count(*) = 0 FROM study_outbox", restarted, "outbox relay"
            )
        finally:
            os.killpg(restarted.pid, signal.SIGTERM)
            restarted.wait(timeout=60)
        counts = await db.fetchrow(
            "SELECT (SELECT count(*) FROM study_instances) AS instances,"
            " (SELECT count(*) FROM study_outcomes) AS outcomes,"
            " (SELECT count(*) FROM study_results) AS results,"
            " (SELECT status FROM study_states) AS status"
        )
    finally:
        await db.close()
    assert dict(counts) == {
        "instances": INSTANCES,
        "outcomes": INSTANCES,
        "results": 1,
        "status": "analysed",
    }
    completions = [
        StudyCompleted.model_validate_json(v)
        for v in await published(kafka_bootstrap, names[TopicKey.STUDIES_COMPLETED])
    ]
    results = [
        StudyResult.model_validate_json(v)
        for v in await published(kafka_bootstrap, names[TopicKey.STUDIES_RESULTS])
    ]
    assert [(c.study_instance_uid, c.instance_count, c.generation) for c in completions] == [
        (study, INSTANCES, 1)
    ]
    assert [(r.instance_count, r.analysed_count, r.failures, r.model) for r in results] == [
        (INSTANCES, INSTANCES, (), MODEL)
    ]
