"""Producing to Kafka with delivery confirmed: the one publisher every stage and tool uses.

Stages consume through Faust but produce through this publisher, awaiting each batch's delivery
before the consumed events are acknowledged. Faust's own ``Topic.send`` inside an agent attaches
the message to the current event and sends it only when that event is acked, which leaves a
window where a crash acks input whose output never reached the broker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pydantic import BaseModel

from schemas.errors import ErrorCode, TransientError
from schemas.settings import Settings
from streams.kafka.clients import AsyncResource, KafkaProducer, build_producer
from streams.kafka.config import KafkaClientConfig
from streams.kafka.messages import Outgoing, RawMessage
from streams.topics import TopicKey, TopicNames


class KafkaPublisher(AsyncResource):
    """An idempotent, acks=all producer that confirms delivery of every message.

    The one publisher of radstream: stages deliver their outcomes with it, the API publishes
    arrivals and audit actions with it, the dead-letter tools replay and mark with it. Failures
    arrive translated (:mod:`streams.kafka.errors`): ``BROKER_UNAVAILABLE`` or ``TIMEOUT``
    (past ``send_timeout_seconds``), both retryable.
    """

    def __init__(self, config: KafkaClientConfig, topics: TopicNames) -> None:
        self._config = config
        self._topics = topics
        self._producer: KafkaProducer | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client_id: str = "radstream",
        send_timeout_seconds: float | None = None,
    ) -> KafkaPublisher:
        """The deployment's publisher, under ``client_id``."""
        config = KafkaClientConfig.from_settings(settings, client_id=client_id)
        if send_timeout_seconds is not None:
            config = dataclasses.replace(config, send_timeout_seconds=send_timeout_seconds)
        return cls(config, TopicNames(settings.topic_prefix))

    @property
    def topics(self) -> TopicNames:
        """The topic names this publisher writes to."""
        return self._topics

    async def start(self) -> None:
        """Connect to the broker."""
        producer = build_producer(self._config)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def ready(self) -> bool:
        """Readiness: the publisher is started and knows at least one broker."""
        producer = self._producer
        return producer is not None and producer.knows_brokers()

    async def deliver(self, messages: Sequence[Outgoing | RawMessage]) -> None:
        """Send ``messages`` and wait until the broker acknowledged every one of them.

        Raises:
            TransientError: BROKER_UNAVAILABLE when the publisher is not started or a message
                could not be delivered; TIMEOUT when the broker did not acknowledge in time.
        """
        if self._producer is None:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "the publisher is not started")
        await self._producer.send_all(
            [m.raw(self._topics) if isinstance(m, Outgoing) else m for m in messages]
        )

    async def publish(
        self,
        topic: TopicKey,
        key: bytes | None,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Deliver one message (the API's and the router simulator's entry point)."""
        await self.deliver([Outgoing(topic, key, value, tuple(headers))])
