"""The API's OpenAPI document, committed as ``gateway/openapi.json`` (a test fails when stale).

Run ``radstream schemas export`` after changing a route or an API body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.app import create_app
from schemas.api import (
    ComparisonQuery,
    LifecycleEntry,
    ModelStatus,
    ResultPage,
    ResultQuery,
    ResultView,
)
from schemas.errors import ErrorCode, TransientError
from schemas.rollout import VersionComparison
from schemas.settings import Settings

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"


class _Unwired:
    """Ports that only exist so the document can be generated; any call fails."""

    async def publish(self, *_args: Any, **_kwargs: Any) -> None:
        raise TransientError(ErrorCode.BROKER_UNAVAILABLE, "not wired")

    async def list_for_user(self, user_id: str, query: ResultQuery) -> ResultPage:
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "not wired")

    async def get(self, result_id: uuid.UUID, *, user_id: str | None) -> ResultView | None:
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "not wired")

    async def mark_verified(self, result_id: uuid.UUID, *, user_id: str, note: str) -> ResultView:
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "not wired")

    async def lifecycle(self, event_id: uuid.UUID) -> Sequence[LifecycleEntry]:
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "not wired")

    async def submitted_by(self, event_id: uuid.UUID) -> str | None:
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "not wired")

    def list(self) -> Sequence[ModelStatus]:
        return ()

    async def compare(self, query: ComparisonQuery) -> VersionComparison:
        raise TransientError(ErrorCode.DATABASE_UNAVAILABLE, "not wired")


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the API (it depends on no setting)."""
    unwired = _Unwired()
    app = create_app(
        Settings(environment="test"),
        publisher=unwired,
        results=unwired,
        lifecycle=unwired,
        models=unwired,
        audit=unwired,
    )
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    """The committed text form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
