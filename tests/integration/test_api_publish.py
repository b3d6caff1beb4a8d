"""POST /infer through the real aiokafka publisher reaches the real broker's topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway.app import create_app
from schemas.errors import ErrorCode, TransientError
from schemas.events import ImageArrived
from streams.audit.io import TopicApiAuditPublisher
from streams.kafka import KafkaClientConfig, KafkaPublisher
from streams.topics import TopicKey, TopicNames
from tests.integration.kafka_support import read_from_start
from tests.unit.gateway.fakes import (
    FakeLifecycle,
    FakeModels,
    FakeResults,
    make_token,
    settings_for,
)

pytestmark = pytest.mark.requirement("RS-API-01", "RS-PUB-01")

# Generous but bounded: a cold broker may need a few seconds to elect leaders of new topics.
RECEIVE_TIMEOUT_SECONDS = 30.0
CORR_1, CORR_2 = "d1" * 16, "d2" * 16


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=1, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def _first_message(
    bootstrap: str, topic: str
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    (record,) = await read_from_start(bootstrap, topic, want=1, within=RECEIVE_TIMEOUT_SECONDS)
    return record.key, record.value, list(record.headers)


@pytest.fixture
async def wired(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str, TopicNames, Path]]:
    """The API wired to a started KafkaPublisher on a unique topic prefix."""
    topics = TopicNames(topic_prefix)
    await _create_topics(kafka_bootstrap, [topics.arrived, topics.api_actions])
    settings = settings_for(tmp_path).model_copy(
        update={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix}
    )
    token = make_token(settings, sub="svc-int", roles=["service"])
    async with KafkaPublisher(KafkaClientConfig(kafka_bootstrap), topics) as publisher:
        app = create_app(
            settings,
            publisher=publisher,
            results=FakeResults(),
            lifecycle=FakeLifecycle(),
            models=FakeModels(),
            audit=TopicApiAuditPublisher(publisher),
            readiness={"kafka": publisher.ready},
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, token, topics, settings.storage_roots[0]


class TestApiPublish:
    """The gateway's events on the real broker."""

    async def test_infer_reaches_images_arrived(
        self, wired: tuple[httpx.AsyncClient, str, TopicNames, Path], kafka_bootstrap: str
    ) -> None:
        """The 202's event id, key and correlation header are what the consumer reads back."""
        client, token, topics, root = wired
        response = await client.post(
            "/infer",
            json={
                "source": "router-1",
                "image_uri": (root / "a.dcm").as_uri(),
                "study_instance_uid": "1.2.840.99",
            },
            headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": CORR_1},
        )
        assert response.status_code == 202
        key, value, headers = await _first_message(kafka_bootstrap, topics.arrived)
        event = ImageArrived.model_validate_json(value)
        assert (str(event.event_id), event.requested_by, key, headers) == (
            response.json()["event_id"],
            "svc-int",
            b"1.2.840.99",
            [("correlation_id", CORR_1.encode())],
        )

    async def test_audit_action_reaches_api_actions(
        self, wired: tuple[httpx.AsyncClient, str, TopicNames, Path], kafka_bootstrap: str
    ) -> None:
        """An auth failure is published on api.actions as an ApiAction."""
        client, _token, topics, _root = wired
        await client.get("/models", headers={"X-Correlation-ID": CORR_2})
        key, value, _headers = await _first_message(kafka_bootstrap, topics.api_actions)
        action = json.loads(value)
        assert (key, action["action"], action["correlation_id"]) == (
            b"anonymous",
            "auth_failure",
            CORR_2,
        )

    async def test_readiness_reports_connected_producer(
        self, wired: tuple[httpx.AsyncClient, str, TopicNames, Path]
    ) -> None:
        """/readyz is ready while the producer is connected."""
        client, _token, _topics, _root = wired
        response = await client.get("/readyz")
        assert response.json() == {"status": "ready", "checks": {"kafka": True}}


class TestKafkaPublisherFailures:
    """Kafka failures are translated to radstream errors where they enter."""

    async def test_publish_before_start_is_broker_unavailable(self) -> None:
        """An unstarted publisher refuses with BROKER_UNAVAILABLE."""
        publisher = KafkaPublisher(KafkaClientConfig("127.0.0.1:9092"), TopicNames("x."))
        event = ImageArrived(source="r1", image_uri="file:///srv/a.dcm")
        with pytest.raises(TransientError) as caught:
            await publisher.publish(TopicKey.IMAGES_ARRIVED, b"k", event, [])
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE

    async def test_start_against_closed_port_is_broker_unavailable(self) -> None:
        """No broker listening: start raises BROKER_UNAVAILABLE (not a raw Kafka error)."""
        publisher = KafkaPublisher(
            KafkaClientConfig("127.0.0.1:1"), TopicNames(f"x{uuid.uuid4().hex}.")
        )
        with pytest.raises(TransientError) as caught:
            await publisher.start()
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE

    async def test_not_ready_before_start(self) -> None:
        """The readiness check is false until the producer is started."""
        assert (
            await KafkaPublisher(KafkaClientConfig("127.0.0.1:9092"), TopicNames("x.")).ready()
            is False
        )
