"""API and operator actions onto api.actions: one message shape for the API and the dlq tools."""

from __future__ import annotations

from schemas.audit import ApiAction, ApiActionKind
from streams.audit.io.actions import TopicApiAuditPublisher, action_message
from streams.topics import TopicKey
from tests.unit.gateway.fakes import FakePublisher


class TestTopicApiAuditPublisher:
    """ApiActions go to api.actions keyed by actor."""

    def _action(self, actor: str | None) -> ApiAction:
        return ApiAction(
            action=ApiActionKind.READ,
            actor_id=actor,
            outcome="success",
            http_status=200,
            route="/results",
            correlation_id="c-1",
        )

    async def test_published_on_api_actions_keyed_by_actor(self) -> None:
        """Topic, key and correlation header."""
        publisher = FakePublisher()
        await TopicApiAuditPublisher(publisher).publish(self._action("dr-house"))
        message = publisher.messages[0]
        assert (message.topic_key, message.key, message.headers) == (
            TopicKey.API_ACTIONS,
            b"dr-house",
            [("correlation_id", b"c-1")],
        )

    async def test_anonymous_actions_share_a_key(self) -> None:
        """Actions without an actor (auth failures) are keyed 'anonymous'."""
        publisher = FakePublisher()
        await TopicApiAuditPublisher(publisher).publish(self._action(None))
        assert publisher.messages[0].key == b"anonymous"


class TestActionMessage:
    def test_message_carries_the_action_keyed_by_actor(self) -> None:
        """The dlq tools' messages have the same shape as the API's."""
        action = ApiAction(
            action=ApiActionKind.DLQ_REPLAY,
            actor_id="ops-1",
            outcome="success",
            http_status=200,
            route="dlq/replay",
            correlation_id="c-2",
        )
        message = action_message(action)
        assert (message.topic, message.key, message.value) == (
            TopicKey.API_ACTIONS,
            b"ops-1",
            action,
        )
        assert message.headers == (("correlation_id", b"c-2"),)
