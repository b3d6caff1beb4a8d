"""KafkaPublisher: what it hands the producer, and refusing work before it started."""

from __future__ import annotations

import pytest

from schemas.errors import ErrorCode, TransientError
from schemas.events import ImageArrived
from schemas.settings import load_settings
from streams.kafka import KafkaClientConfig, KafkaPublisher, Outgoing, RawMessage
from streams.kafka import publisher as publisher_module
from streams.topics import TopicKey, TopicNames


class RecordingProducer:
    """Stands in for the layer's producer."""

    def __init__(self) -> None:
        self.sent: list[list[RawMessage]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def knows_brokers(self) -> bool:
        return True

    async def send_all(self, messages: list[RawMessage]) -> None:
        self.sent.append(messages)


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> RecordingProducer:
    """The producer every publisher built in the test gets."""
    fake = RecordingProducer()
    monkeypatch.setattr(publisher_module, "build_producer", lambda _config: fake)
    return fake


class TestKafkaPublisher:
    async def test_outgoing_is_addressed_by_full_topic_name(
        self, producer: RecordingProducer
    ) -> None:
        """A stage's Outgoing becomes a message to its topic under the prefix, as JSON."""
        event = ImageArrived(source="r1", image_uri="file:///srv/a.dcm")
        raw = RawMessage("somewhere.else", b"k", None)
        async with KafkaPublisher(KafkaClientConfig("k:9092"), TopicNames("p.")) as publisher:
            assert await publisher.ready()
            await publisher.deliver([Outgoing(TopicKey.IMAGES_ARRIVED, b"k", event), raw])
        (sent,) = producer.sent
        assert sent[0] == RawMessage("p.images.arrived", b"k", event.model_dump_json().encode())
        assert sent[1] is raw
        assert producer.stopped

    async def test_publish_carries_headers(self, producer: RecordingProducer) -> None:
        """publish() is one delivery of one message with its headers."""
        event = ImageArrived(source="r1", image_uri="file:///srv/a.dcm")
        async with KafkaPublisher(KafkaClientConfig("k:9092"), TopicNames("p.")) as publisher:
            await publisher.publish(TopicKey.IMAGES_ARRIVED, None, event, [("c", b"1")])
        assert producer.sent[0][0].headers == (("c", b"1"),)

    async def test_not_started_is_broker_unavailable(self) -> None:
        """Delivering before start is refused with a retryable BROKER_UNAVAILABLE."""
        publisher = KafkaPublisher(KafkaClientConfig("k:9092"), TopicNames("p."))
        assert not await publisher.ready()
        with pytest.raises(TransientError) as caught:
            await publisher.deliver([RawMessage("t", None, b"")])
        assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE

    def test_from_settings(self) -> None:
        """The deployment's prefix and brokers, a client id and an optional tighter bound."""
        settings = load_settings(kafka_bootstrap="b:1", topic_prefix="x.")
        publisher = KafkaPublisher.from_settings(
            settings, client_id="radstream-api", send_timeout_seconds=10.0
        )
        assert publisher.topics == TopicNames("x.")
        assert publisher._config == KafkaClientConfig(
            "b:1", client_id="radstream-api", send_timeout_seconds=10.0
        )
