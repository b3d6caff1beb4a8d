"""Producing to Kafka with delivery confirmed: the one publisher every stage and tool uses.

Stages consume through Faust but produce through this publisher, awaiting each batch's delivery
before the consumed events are acknowledged. Faust's own ``Topic.send`` inside an agent attaches
the message to the current event and sends it only when that event is acked, which leaves a
window where a crash acks input whose output never reached the broker.

A delivery that fails (broker gone, not acknowledged within ``send_timeout_seconds``, an
``OutOfOrderSequenceNumber`` after a long outage) leaves the idempotent producer in a state it
may never leave: batches queued under sequence numbers the broker no longer accepts, a sender
task that died. So the publisher never retries on that producer: the next delivery closes it
(bounded, abandoning it past ``close_timeout_seconds``) and starts a fresh one, with a new
producer id, that sends the whole batch again. A message the old producer did get through is
then written twice; every consumer is idempotent by event id, so the duplicate is absorbed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import structlog
from pydantic import BaseModel

from schemas.errors import ErrorCode, TransientError
from schemas.settings import Settings
from streams.kafka.clients import AsyncResource, KafkaProducer, build_producer
from streams.kafka.config import KafkaClientConfig
from streams.kafka.messages import Outgoing, RawMessage
from streams.topics import TopicKey, TopicNames

log = structlog.get_logger("radstream.kafka")


class KafkaPublisher(AsyncResource):
    """An idempotent, acks=all producer that confirms delivery of every message.

    The one publisher of radstream: stages deliver their outcomes with it, the API publishes
    arrivals and audit actions with it, the dead-letter tools replay and mark with it. Failures
    arrive translated (:mod:`streams.kafka.errors`): ``BROKER_UNAVAILABLE`` or ``TIMEOUT``
    (past ``send_timeout_seconds``), both retryable. After a failed delivery the producer is
    replaced before the next one (see the module docstring); ``producers_replaced`` counts it.
    """

    def __init__(self, config: KafkaClientConfig, topics: TopicNames) -> None:
        self._config = config
        self._topics = topics
        self._producer: KafkaProducer | None = None
        self._started = False
        self._suspect = False
        self._replacing = asyncio.Lock()  # concurrent deliveries (the API) replace it once
        self.producers_replaced = 0

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
        self._producer, self._started, self._suspect = producer, True, False

    async def stop(self) -> None:
        """Flush and disconnect (bounded: see ``close_timeout_seconds``)."""
        self._started = False
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def ready(self) -> bool:
        """Readiness: the publisher is started and knows at least one broker."""
        producer = self._producer
        return producer is not None and not self._suspect and producer.knows_brokers()

    async def _replace_producer(self) -> KafkaProducer:
        """Close the producer a delivery failed on and start a fresh one (a new producer id)."""
        old, self._producer = self._producer, None
        if old is not None:
            self.producers_replaced += 1
            log.warning("kafka_producer_replaced", client=self._config.client_id)
            await old.stop()
        fresh = build_producer(self._config)
        await fresh.start()
        self._producer, self._suspect = fresh, False
        return fresh

    async def deliver(self, messages: Sequence[Outgoing | RawMessage]) -> None:
        """Send ``messages`` and wait until the broker acknowledged every one of them.

        Raises:
            TransientError: BROKER_UNAVAILABLE when the publisher is not started or a message
                could not be delivered; TIMEOUT when the broker did not acknowledge in time.
        """
        if not self._started:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "the publisher is not started")
        async with self._replacing:
            producer = self._producer
            if producer is None or self._suspect:
                producer = await self._replace_producer()
        try:
            await producer.send_all(
                [m.raw(self._topics) if isinstance(m, Outgoing) else m for m in messages]
            )
        except TransientError:
            if producer is self._producer:
                self._suspect = True
            raise

    async def publish(
        self,
        topic: TopicKey,
        key: bytes | None,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Deliver one message (the API's and the router simulator's entry point)."""
        await self.deliver([Outgoing(topic, key, value, tuple(headers))])
