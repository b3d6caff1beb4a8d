"""SIGKILL a real `radstream worker` mid-stream: after a restart every arrival has its outcome.

The worker runs as users run it (a subprocess of the `radstream` console script), with the
validation and inference stages. It is killed while outcomes are being produced, then started
again with the same consumer group: every arrival must end up with at least one outcome
(at-least-once; duplicates are allowed here and absorbed downstream by natural keys), and no
arrival may be lost.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.correlation import CORRELATION_ID_HEADER
from schemas.events import ImageRejected, ImageValidated, InferenceCompleted
from schemas.settings import SAMPLES_DIR
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.router import arrival_for_file
from streams.topics import TopicKey, TopicNames

pytestmark = pytest.mark.requirement("RS-G-03", "RS-G-06")

EVENTS = 60
# Bounded waits: the worker starts in a few seconds and handles 60 small images in a few more.
STEP_TIMEOUT_SECONDS = 90


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`radstream worker --stages validation,inference` in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--stages", "validation,inference"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def outcomes(bootstrap: str, names: TopicNames) -> dict[str, set[str]]:
    """Event ids seen so far per outcome topic (reads every committed message)."""
    consumer = AIOKafkaConsumer(
        names.validated,
        names.rejected,
        names.results,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, set[str]] = {
        names.validated: set(),
        names.rejected: set(),
        names.results: set(),
    }
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                return seen
            for records in batch.values():
                for record in records:
                    model = {
                        names.validated: ImageValidated,
                        names.rejected: ImageRejected,
                        names.results: InferenceCompleted,
                    }[record.topic]
                    seen[record.topic].add(str(model.model_validate_json(record.value).event_id))
    finally:
        await consumer.stop()


async def first_message(bootstrap: str, topic: str) -> None:
    """Return as soon as ``topic`` has its first message: the worker is mid-stream then."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.getone(), STEP_TIMEOUT_SECONDS)
    finally:
        await consumer.stop()


async def test_killed_worker_loses_nothing(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """Kill -9 mid-stream, restart: every arrival is validated and inferred."""
    root = tmp_path / "images"
    root.mkdir()
    # A 512 px export: the worker needs a few seconds for 60, so the kill lands mid-stream.
    shutil.copy(SAMPLES_DIR / "raster" / "ct_512.png", root / "ct.png")
    names = TopicNames(topic_prefix)
    await ensure_topics(kafka, topic_prefix, partitions_override=2)
    env = {
        **os.environ,
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": f"rstest-crash-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_STORAGE_ROOTS": str(root),
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_LOGGING__LEVEL": "WARNING",
        # Small batches, so the kill lands between batches as well as inside one.
        "RADSTREAM_INFERENCE__BATCH_SIZE": "2",
    }
    # One model per image (routing would also send this real CT export to lesion-detector,
    # whose input guard refuses it: a rejection, which this test counts as a loss).
    template = arrival_for_file(
        root / "ct.png", source="PACS1", modality="CT", model_ids=["image-quality"]
    )
    arrivals = [template.model_copy(update={"event_id": uuid.uuid4()}) for _ in range(EVENTS)]
    wanted = {str(a.event_id) for a in arrivals}

    worker = start_worker(env)
    try:
        async with KafkaPublisher(kafka, names) as publisher:
            for arrival in arrivals:
                await publisher.publish(
                    TopicKey.IMAGES_ARRIVED,
                    arrival.message_key(),
                    arrival,
                    ((CORRELATION_ID_HEADER, arrival.event_id.hex.encode()),),
                )
        await first_message(kafka_bootstrap, names.results)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # no shutdown hook, no final commit
        worker.wait(timeout=30)
    before = await outcomes(kafka_bootstrap, names)

    restarted = start_worker(env)
    try:
        seen = await outcomes(kafka_bootstrap, names)
        async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
            while not wanted <= seen[names.results]:
                await asyncio.sleep(0.5)
                seen = await outcomes(kafka_bootstrap, names)
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=60)
    assert wanted <= seen[names.validated]
    assert wanted <= seen[names.results]
    assert seen[names.rejected] == set()
    # The kill really interrupted the run: not everything was done before it.
    assert not wanted <= before[names.results]
