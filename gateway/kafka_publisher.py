"""The aiokafka-backed :class:`~gateway.ports.EventPublisher` (started with the app lifespan)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from schemas.errors import ErrorCode, TransientError
from streams.topics import TopicKey, TopicNames

DEFAULT_SEND_TIMEOUT_SECONDS = 10.0


class KafkaEventPublisher:
    """Publishes events as JSON with ``acks=all`` and idempotence, awaiting the broker's ack.

    Kafka failures are translated where they enter: ``BROKER_UNAVAILABLE`` for client errors,
    ``TIMEOUT`` when the acknowledgement does not come in time.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: TopicNames,
        *,
        client_id: str = "radstream-gateway",
        send_timeout_seconds: float = DEFAULT_SEND_TIMEOUT_SECONDS,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = topics
        self._client_id = client_id
        self._timeout = send_timeout_seconds
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the producer; raises BROKER_UNAVAILABLE when the broker cannot be reached."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "cannot reach Kafka") from exc
        self._producer = producer

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def ready(self) -> bool:
        """Readiness check: the producer is started and knows at least one broker."""
        producer = self._producer
        return producer is not None and bool(producer.client.cluster.brokers())

    async def publish(
        self,
        topic_key: TopicKey,
        key: bytes,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Send ``value`` as JSON and wait for the acknowledgement of all in-sync replicas."""
        if self._producer is None:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "the publisher is not started")
        try:
            async with asyncio.timeout(self._timeout):
                await self._producer.send_and_wait(
                    self._topics[topic_key],
                    value=value.model_dump_json().encode(),
                    key=key,
                    headers=list(headers),
                )
        except TimeoutError as exc:
            raise TransientError(ErrorCode.TIMEOUT, "Kafka did not acknowledge in time") from exc
        except KafkaError as exc:
            raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "Kafka refused the event") from exc
