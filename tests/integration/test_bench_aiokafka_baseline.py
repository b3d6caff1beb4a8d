"""The aiokafka baseline worker does the pipeline's work: here its validation stage, in-process.

The benchmark runs it as subprocesses; this runs ``app.run_worker`` with the baseline's
consumer loop on the real broker to show each arrival gets exactly one outcome and the group's
offsets are committed past it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import app
from bench.aiokafka_baseline import aiokafka_consumer_loop
from bench.probe import outgoing_arrival
from bench.workload import ArrivalFactory, WorkItem
from schemas.events import ImageRejected, ImageValidated
from schemas.settings import SAMPLES_DIR
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.topics import TopicNames
from tests.integration.settings_support import isolated_settings

pytestmark = pytest.mark.requirement("RS-BEN-01")

# Bounded: validation of two small files takes well under a second once the group joined.
OUTCOME_TIMEOUT_SECONDS = 60


async def read_outcomes(bootstrap: str, topics: TopicNames, expected: int) -> list[bytes]:
    """The values on the validated and rejected topics, once ``expected`` arrived."""
    consumer = AIOKafkaConsumer(
        topics.validated,
        topics.rejected,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(OUTCOME_TIMEOUT_SECONDS):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                values += [r.value for records in batch.values() for r in records if r.value]
    finally:
        await consumer.stop()
    return values


async def test_baseline_validation_gives_one_outcome_per_arrival_and_commits(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """A good PNG is validated, an empty DICOM rejected, and the offsets committed past both."""
    settings = isolated_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        storage_roots=(SAMPLES_DIR,),
        audit_dir=tmp_path,
    )
    topics = TopicNames(topic_prefix)
    await ensure_topics(kafka, topic_prefix, partitions_override=1)
    factory = ArrivalFactory()
    arrivals = [
        factory.fresh(WorkItem(SAMPLES_DIR / "raster" / "ct_64.png", bad=False)),
        factory.fresh(WorkItem(SAMPLES_DIR / "bad" / "empty.dcm", bad=True)),
    ]
    async with KafkaPublisher(kafka, topics) as publisher:
        await publisher.deliver([outgoing_arrival(a) for a in arrivals])
    stop = asyncio.Event()
    worker = asyncio.create_task(
        app.run_worker(
            settings,
            ["validation"],
            stop,
            consumer_loop=aiokafka_consumer_loop,
            serve_http=False,
        )
    )
    try:
        values = await read_outcomes(kafka_bootstrap, topics, 2)
    finally:
        stop.set()
        await asyncio.wait_for(worker, OUTCOME_TIMEOUT_SECONDS)
    validated = [ImageValidated.model_validate_json(v) for v in values if b'"geometry"' in v]
    rejected = [ImageRejected.model_validate_json(v) for v in values if b'"error_code"' in v]
    assert [v.event_id for v in validated] == [arrivals[0].event_id]
    assert [(r.event_id, r.error_code) for r in rejected] == [(arrivals[1].event_id, "IMAGE_EMPTY")]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            app.consumer_group(settings, ["validation"])
        )
    finally:
        await admin.close()
    assert offsets[TopicPartition(topics.arrived, 0)].offset == 2
