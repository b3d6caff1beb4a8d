"""create_app wiring: lifespan resources, the audit adapter and error helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit_publisher import TopicApiAuditPublisher
from gateway.errors import describe_validation_errors
from schemas.audit import ApiAction, ApiActionKind
from streams.topics import TopicKey
from tests.unit.gateway.fakes import FakePublisher, build_harness

pytestmark = pytest.mark.requirement("RS-API-01", "RS-API-07")


class TestLifespan:
    """Resources start with the app and stop with it."""

    async def test_resources_start_and_stop(self, tmp_path: Path) -> None:
        """The publisher passed as a resource is started, then stopped on shutdown."""
        harness = build_harness(tmp_path)
        async with harness.app.router.lifespan_context(harness.app):
            assert (harness.publisher.started, harness.publisher.stopped) == (True, False)
        assert harness.publisher.stopped


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


class TestDescribeValidationErrors:
    """Validation messages name fields, never values."""

    def test_lists_at_most_five_fields(self) -> None:
        """Long error lists are cut and counted."""
        errors = [{"loc": ("body", f"f{i}"), "type": "missing"} for i in range(7)]
        message = describe_validation_errors(errors)
        assert message.endswith("and 2 more")
        assert "body.f4 (missing)" in message

    def test_unexpected_key_is_masked(self) -> None:
        """The name of an unexpected field is client input and is not repeated."""
        errors = [{"loc": ("body", "Doe^Jane"), "type": "extra_forbidden"}]
        assert "Doe" not in describe_validation_errors(errors)
