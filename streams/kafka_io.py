"""Producing to Kafka with delivery confirmed: the one producer every stage and tool uses.

Stages consume through Faust but produce through this aiokafka producer, awaiting each batch's
delivery before the consumed events are acknowledged. Faust's own ``Topic.send`` inside an agent
attaches the message to the current event and sends it only when that event is acked, which
leaves a window where a crash acks input whose output never reached the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from schemas.errors import ErrorCode, TransientError
from streams.topics import TopicKey, TopicNames

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message a stage wants produced."""

    topic: TopicKey
    key: bytes | None
    value: BaseModel | bytes
    headers: Headers = field(default=())

    def value_bytes(self) -> bytes:
        """The wire bytes: models as JSON (pydantic codec), raw bytes as they are."""
        if isinstance(self.value, bytes):
            return self.value
        return self.value.model_dump_json().encode()


DEFAULT_SEND_TIMEOUT_SECONDS = 30.0


class KafkaPublisher:
    """An idempotent, acks=all aiokafka producer that confirms delivery of every message.

    The one producer of radstream: stages deliver their outcomes with it, the API publishes
    arrivals and audit actions with it, tools publish with it. Kafka failures are translated
    where they enter: ``BROKER_UNAVAILABLE`` for client errors, ``TIMEOUT`` when the broker does
    not acknowledge within ``send_timeout_seconds``; both are retryable.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        *,
        client_id: str = "radstream",
        send_timeout_seconds: float = DEFAULT_SEND_TIMEOUT_SECONDS,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._client_id = client_id
        self._timeout = send_timeout_seconds
        self._producer: AIOKafkaProducer | None = None

    @property
    def topics(self) -> TopicNames:
        """The topic names this publisher writes to."""
        return self._topics

    async def start(self) -> None:
        """Connect to the broker."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            compression_type=None,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "broker unreachable") from exc
        self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def ready(self) -> bool:
        """Readiness: the producer is started and knows at least one broker."""
        producer = self._producer
        return producer is not None and bool(producer.client.cluster.brokers())

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def deliver(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages`` and wait until the broker acknowledged every one of them.

        Raises:
            TransientError: BROKER_UNAVAILABLE when the publisher is not started or a message
                could not be delivered; TIMEOUT when the broker did not acknowledge in time.
        """
        if self._producer is None:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "the publisher is not started")
        producer = self._producer
        try:
            async with asyncio.timeout(self._timeout):
                futures = [
                    await producer.send(
                        self._topics[m.topic],
                        value=m.value_bytes(),
                        key=m.key,
                        headers=list(m.headers),
                    )
                    for m in messages
                ]
                await asyncio.gather(*futures)
        except TimeoutError as exc:
            raise TransientError(ErrorCode.TIMEOUT, "Kafka did not acknowledge in time") from exc
        except KafkaError as exc:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "delivery failed") from exc

    async def publish(
        self,
        topic: TopicKey,
        key: bytes | None,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Deliver one message (the API's and the router simulator's entry point)."""
        await self.deliver([Outgoing(topic, key, value, tuple(headers))])
