"""Real broker: an arrival published with aiokafka is read back by Faust and a plain consumer."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import faust
import pytest

from schemas.correlation import CORRELATION_ID_HEADER
from schemas.events import ImageArrived
from streams.agents import incoming_from_event
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.pipeline import Incoming
from streams.topics import TopicKey, TopicNames
from tests.integration.kafka_support import read_from_start

pytestmark = pytest.mark.requirement("RS-PUB-01")

# Generous bound: a consumer group's first join on a loaded 2-core CI machine takes seconds.
RECEIVE_TIMEOUT_SECONDS = 45
CORRELATION_ID = "0c" * 16


async def test_arrival_reaches_faust_agent_and_plain_consumer(
    kafka_bootstrap: str, kafka: KafkaClientConfig, topic_prefix: str, tmp_path: Path
) -> None:
    """One published arrival is read intact, with its key and correlation header, by both."""
    await ensure_topics(kafka, topic_prefix, keys=(TopicKey.IMAGES_ARRIVED,), partitions_override=1)
    names = TopicNames(topic_prefix)
    event = ImageArrived(
        source="PACS1", image_uri="file:///data/ct.dcm", study_instance_uid="1.2.840.1"
    )
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    app = faust.App(
        f"rstest-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{kafka_bootstrap}",
        # Faust's default data directory is <app id>-data in the working directory (the checkout).
        datadir=str(tmp_path / "faust"),
        store="memory://",
        web_enabled=False,
        loop=asyncio.get_running_loop(),
        topic_disable_leader=True,
    )
    channel = app.topic(names.arrived, key_serializer="raw", value_serializer="raw")

    @app.agent(channel)
    async def arrivals(stream):  # type: ignore[no-untyped-def]
        async for faust_event in stream.events():
            await received.put(incoming_from_event(faust_event))

    await app.start()
    try:
        async with KafkaPublisher(kafka, names) as publisher:
            await publisher.publish(
                TopicKey.IMAGES_ARRIVED,
                event.message_key(),
                event,
                ((CORRELATION_ID_HEADER, CORRELATION_ID.upper().encode()),),
            )
        via_faust = await asyncio.wait_for(received.get(), RECEIVE_TIMEOUT_SECONDS)
    finally:
        await app.stop()
    assert ImageArrived.model_validate_json(via_faust.value) == event
    assert via_faust.key == b"1.2.840.1"
    assert via_faust.correlation_id == CORRELATION_ID  # canonical: lower case

    (record,) = await read_from_start(
        kafka_bootstrap, names.arrived, want=1, within=RECEIVE_TIMEOUT_SECONDS
    )
    assert ImageArrived.model_validate_json(record.value) == event
    assert dict(record.headers)[CORRELATION_ID_HEADER] == CORRELATION_ID.upper().encode()
