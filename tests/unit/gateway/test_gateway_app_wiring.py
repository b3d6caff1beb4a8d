"""create_app wiring: lifespan resources and error helpers."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import describe_validation_errors
from tests.unit.gateway.fakes import build_harness


class TestLifespan:
    """Resources start with the app and stop with it."""

    async def test_resources_start_and_stop(self, tmp_path: Path) -> None:
        """The publisher passed as a resource is started, then stopped on shutdown."""
        harness = build_harness(tmp_path)
        async with harness.app.router.lifespan_context(harness.app):
            assert (harness.publisher.started, harness.publisher.stopped) == (True, False)
        assert harness.publisher.stopped


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
