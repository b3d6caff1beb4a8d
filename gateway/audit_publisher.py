"""The :class:`~gateway.ports.ApiAuditPublisher` that puts API actions on ``api.actions``."""

from __future__ import annotations

from gateway.ports import EventPublisher
from schemas.audit import ApiAction
from schemas.correlation import CORRELATION_ID_HEADER
from streams.topics import TopicKey

ANONYMOUS_KEY = b"anonymous"


class TopicApiAuditPublisher:
    """Publishes each ApiAction through an EventPublisher, keyed by actor (anonymous if none).

    Keying by actor keeps one caller's actions in order within a partition.
    """

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def publish(self, action: ApiAction) -> None:
        """Publish ``action`` on ``api.actions`` with its correlation id as a header."""
        key = action.actor_id.encode() if action.actor_id else ANONYMOUS_KEY
        await self._publisher.publish(
            TopicKey.API_ACTIONS,
            key,
            action,
            [(CORRELATION_ID_HEADER, action.correlation_id.encode())],
        )
