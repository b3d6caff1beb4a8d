"""API and operator actions onto ``api.actions``, where the audit agent chains them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel

from schemas.audit import ApiAction
from schemas.correlation import CORRELATION_ID_HEADER
from streams.kafka import Outgoing
from streams.topics import TopicKey

ANONYMOUS_KEY = b"anonymous"


def action_message(action: ApiAction) -> Outgoing:
    """The ``api.actions`` message of ``action``: keyed by actor, correlation id as a header.

    Keying by actor keeps one caller's actions in order within a partition.
    """
    key = action.actor_id.encode() if action.actor_id else ANONYMOUS_KEY
    return Outgoing(
        TopicKey.API_ACTIONS,
        key,
        action,
        ((CORRELATION_ID_HEADER, action.correlation_id.encode()),),
    )


class EventPublisher(Protocol):
    """What the publisher needs: a delivery-confirming publish (``KafkaPublisher.publish``)."""

    async def publish(
        self,
        topic: TopicKey,
        key: bytes | None,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Publish ``value`` and return once the broker acknowledged it."""


class TopicApiAuditPublisher:
    """The API's :class:`~gateway.ports.ApiAuditPublisher`: each action onto ``api.actions``."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish(self, action: ApiAction) -> None:
        """Publish ``action`` (see :func:`action_message`) and wait until the broker has it."""
        message = action_message(action)
        await self._publisher.publish(message.topic, message.key, action, message.headers)
