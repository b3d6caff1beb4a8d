"""The audit contracts: frozen, closed to unknown fields, timestamps in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas.audit import ApiAction, ApiActionKind
from tests.unit.audit.factories import api_action

pytestmark = pytest.mark.requirement("RS-AUD-01", "RS-CON-01")


class TestApiAction:
    def test_round_trips_as_json(self) -> None:
        """An action survives JSON encoding unchanged."""
        action = api_action()
        assert ApiAction.model_validate_json(action.model_dump_json()) == action

    def test_unknown_field_refused(self) -> None:
        """Extra fields (such as a request body) are refused."""
        with pytest.raises(ValidationError):
            ApiAction.model_validate(api_action().model_dump() | {"body": "x"})

    def test_time_normalised_to_utc(self) -> None:
        """A local timestamp is stored in UTC."""
        local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        assert api_action(occurred_at=local).occurred_at.utcoffset() == timedelta(0)

    def test_free_text_route_refused(self) -> None:
        """A route with spaces (free text) is refused."""
        with pytest.raises(ValidationError):
            api_action(route="/v1/results?name=John Doe")

    def test_kinds(self) -> None:
        """The action kinds exist with their wire values, in order (append only)."""
        assert [k.value for k in ApiActionKind] == [
            "submit",
            "read",
            "verify",
            "auth_failure",
            "dlq_purge",
            "dlq_replay",
            "model_add",
            "model_rollout",
            "urgent_acknowledge",
        ]
