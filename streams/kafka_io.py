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


class KafkaPublisher:
    """An idempotent, acks=all aiokafka producer that confirms delivery of every message."""

    def __init__(self, bootstrap: str, topics: TopicNames, *, client_id: str = "radstream") -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._client_id = client_id
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
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def deliver(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages`` and wait until the broker acknowledged every one of them.

        Raises:
            TransientError: BROKER_UNAVAILABLE when any message could not be delivered.
        """
        if self._producer is None:
            raise RuntimeError("KafkaPublisher.start() was not called")
        producer = self._producer
        try:
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
        except KafkaError as exc:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "delivery failed") from exc

    async def publish(
        self, topic: TopicKey, key: bytes | None, value: BaseModel, headers: Headers = ()
    ) -> None:
        """Deliver one message (the API's and the router simulator's entry point)."""
        await self.deliver([Outgoing(topic, key, value, headers)])
