"""KafkaPublisher: what it hands the producer, refusing work before it started, recovering."""

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


class FlakyProducer(RecordingProducer):
    """A producer whose deliveries fail while ``failing`` is set."""

    refuse_start = False

    def __init__(self, failing: bool) -> None:
        super().__init__()
        self.failing = failing

    async def start(self) -> None:
        if self.refuse_start:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "connecting: unavailable")
        await super().start()

    async def send_all(self, messages: list[RawMessage]) -> None:
        if self.failing:
            raise TransientError(ErrorCode.TIMEOUT, "delivery: Kafka did not answer in time")
        await super().send_all(messages)


class TestProducerReplacement:
    """After a failed delivery the next one runs on a fresh producer (issue #17 A)."""

    @pytest.fixture
    def built(self, monkeypatch: pytest.MonkeyPatch) -> list[FlakyProducer]:
        """Every producer the publisher builds: the first fails, the later ones deliver."""
        producers: list[FlakyProducer] = []

        def build(_config: KafkaClientConfig) -> FlakyProducer:
            producers.append(FlakyProducer(failing=not producers))
            return producers[-1]

        monkeypatch.setattr(publisher_module, "build_producer", build)
        return producers

    async def test_failed_delivery_replaces_the_producer_before_the_next(
        self, built: list[FlakyProducer]
    ) -> None:
        """The stuck producer is stopped and the whole batch resent on a new one."""
        batch = [RawMessage("t", None, b"1"), RawMessage("t", None, b"2")]
        async with KafkaPublisher(KafkaClientConfig("k:9092"), TopicNames("p.")) as publisher:
            with pytest.raises(TransientError):
                await publisher.deliver(batch)
            assert not await publisher.ready()
            await publisher.deliver(batch)
            assert await publisher.ready()
            assert publisher.producers_replaced == 1
        first, second = built
        assert first.stopped
        assert first.sent == []
        assert second.sent == [batch]
        assert second.stopped

    async def test_a_healthy_producer_is_kept(self, built: list[FlakyProducer]) -> None:
        """Deliveries that succeed never replace the producer."""
        async with KafkaPublisher(KafkaClientConfig("k:9092"), TopicNames("p.")) as publisher:
            built[0].failing = False
            for _ in range(3):
                await publisher.deliver([RawMessage("t", None, b"v")])
            assert publisher.producers_replaced == 0
        assert len(built) == 1

    async def test_replacement_that_cannot_connect_is_retried_later(
        self, built: list[FlakyProducer], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While the broker is away the new producer cannot start: retryable, tried again."""
        async with KafkaPublisher(KafkaClientConfig("k:9092"), TopicNames("p.")) as publisher:
            with pytest.raises(TransientError):
                await publisher.deliver([RawMessage("t", None, b"v")])

            monkeypatch.setattr(FlakyProducer, "refuse_start", True)
            with pytest.raises(TransientError) as caught:
                await publisher.deliver([RawMessage("t", None, b"v")])
            assert caught.value.code is ErrorCode.BROKER_UNAVAILABLE
            monkeypatch.setattr(FlakyProducer, "refuse_start", False)
            await publisher.deliver([RawMessage("t", None, b"v")])
            assert len(built) == 3
            assert built[-1].sent == [[RawMessage("t", None, b"v")]]
