"""create_app wiring: error helpers."""

from __future__ import annotations

import pytest

from gateway.errors import describe_validation_errors

pytestmark = pytest.mark.requirement("RS-API-01", "RS-API-07")


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

    def test_unparsable_json_is_one_stable_reason(self) -> None:
        """A body that is not JSON is said so, without the parser's position or message."""
        errors = [
            {"loc": ("body", 9), "type": "json_invalid", "ctx": {"error": "Unterminated string"}}
        ]
        assert describe_validation_errors(errors) == "invalid request: the body is not valid JSON"
