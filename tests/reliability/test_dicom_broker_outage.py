"""The broker goes down while a PACS sends: the sender is told to retry, nothing is lost, and
the resent instance becomes exactly one arrival event.

A private broker (never the shared one) is stopped between two C-STOREs of dcmtk's storescu
and started again; the receiver keeps running throughout with one publisher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from schemas.settings import Settings
from streams.dicom.instances import read_instance
from streams.kafka import KafkaClientConfig, KafkaPublisher, ensure_topics
from streams.topics import TopicKey, TopicNames
from tests.dicom_peers import arrivals, listening, storescu
from tests.dicom_support import variant
from tests.reliability.private_kafka import PrivateKafka

PREFIX = "outage."


@pytest.fixture
def settings(tmp_path: Path, broker: PrivateKafka) -> Settings:
    root = tmp_path / "storage"
    root.mkdir()
    return Settings(
        environment="test",
        kafka_bootstrap=broker.bootstrap,
        topic_prefix=PREFIX,
        storage_roots=(root,),
        dicom={
            "port": 0,
            "allowed_calling_ae_titles": ["STORESCU"],
            # Short, so the C-STORE during the outage is answered quickly.
            "publish_timeout_seconds": 3,
        },
    )


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[KafkaPublisher]:
    await ensure_topics(
        KafkaClientConfig.from_settings(settings), PREFIX, keys=(TopicKey.IMAGES_ARRIVED,)
    )
    # The publisher's own bound outlives the outage, so a publication started while the broker
    # was down is still waiting for it when it returns (and is then confirmed, once).
    async with KafkaPublisher.from_settings(settings, send_timeout_seconds=120) as kafka:
        yield kafka


async def test_outage_during_c_store(
    tmp_path: Path, broker: PrivateKafka, settings: Settings, publisher: KafkaPublisher
) -> None:
    """Before: stored. During: 'out of resources'. After: the resend stored, one event each."""
    before, during = tmp_path / "before.dcm", tmp_path / "during.dcm"
    before.write_bytes(variant())
    during.write_bytes(variant())
    async with listening(settings, publisher) as (_host, port):
        code, output = await storescu(port, [before], calling="STORESCU")
        assert code == 0, output

        await asyncio.to_thread(broker.down)
        code, output = await storescu(port, [during], calling="STORESCU")
        assert "outofresources" in output.replace(" ", "").lower(), output

        await asyncio.to_thread(broker.up)
        code, output = await storescu(port, [during], calling="STORESCU")
        assert code == 0, output
        assert "Received Store Response (Success)" in output

    events = await arrivals(broker.bootstrap, TopicNames(PREFIX).arrived)
    sops = sorted(event.sop_instance_uid or "" for _, event in events)
    expected = sorted(read_instance(p.read_bytes()).sop_instance_uid for p in (before, during))
    assert sops == expected
