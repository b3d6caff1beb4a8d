"""In-memory fakes of the gateway's ports and a harness building the app around them.

Fakes, not mocks: each keeps real state (published events, stored results, audit entries) so
tests assert on behaviour. Shared by tests/unit/gateway and tests/security/test_api_*.py.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from gateway.app import create_app
from gateway.ports import ReadinessCheck
from schemas.api import (
    ComparisonQuery,
    LifecycleEntry,
    LifecycleState,
    ModelStatus,
    ResultPage,
    ResultQuery,
    ResultView,
    VerificationStatus,
)
from schemas.audit import ApiAction
from schemas.errors import (
    ConflictError,
    ErrorCode,
    InputValidationError,
    RadstreamError,
    ResourceNotFoundError,
)
from schemas.events import ModelRef, Stage
from schemas.rollout import VersionComparison
from schemas.settings import Settings
from schemas.studies import StudyView
from streams.inference.comparison import compare_versions
from streams.topics import TopicKey
from tests.unit.fake_clock import FakeClock

SECRET = "unit-test-secret-of-at-least-32-bytes!!"
DIGEST = "ab" * 32


@dataclass
class Published:
    """One message the fake publisher took."""

    topic_key: TopicKey
    key: bytes
    value: BaseModel
    headers: list[tuple[str, bytes]]


@dataclass
class FakePublisher:
    """Keeps what it was asked to publish; raises ``fail_with`` when set."""

    messages: list[Published] = field(default_factory=list)
    fail_with: Exception | None = None

    async def publish(
        self,
        topic_key: TopicKey,
        key: bytes,
        value: BaseModel,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Record the message or fail."""
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(Published(topic_key, key, value, list(headers)))


@dataclass
class FakeAudit:
    """Keeps every ApiAction; raises ``fail_with`` when set."""

    actions: list[ApiAction] = field(default_factory=list)
    fail_with: Exception | None = None

    async def publish(self, action: ApiAction) -> None:
        """Record the action or fail."""
        if self.fail_with is not None:
            raise self.fail_with
        self.actions.append(action)


def make_result(
    owner: str, *, completed_at: datetime | None = None, **overrides: Any
) -> ResultView:
    """A plausible stored result requested by ``owner``."""
    moment = completed_at or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "result_id": uuid.uuid4(),
        "event_id": uuid.uuid4(),
        "model": ModelRef(
            name="chest-xray",
            version="1.0.0",
            weights_sha256=DIGEST,
            runtime="onnxruntime",
            provider="CPUExecutionProvider",
        ),
        "input_sha256": "cd" * 32,
        "decision": "normal",
        "scores": {"abnormal": 0.1},
        "thresholds": {"abnormal": 0.5},
        "occurred_at": moment - timedelta(seconds=5),
        "completed_at": moment,
        "requested_by": owner,
        "study_instance_uid": "1.2.3",
        "modality": "CR",
    }
    values.update(overrides)
    return ResultView(**values)


def _decode_cursor(cursor: str) -> int:
    """The offset in a cursor this fake issued; anything else is the client's error."""
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except ValueError as exc:  # binascii.Error and int() failures are ValueErrors
        raise InputValidationError(ErrorCode.REQUEST_INVALID, "unknown cursor") from exc


@dataclass
class FakeResults:
    """Results in memory, with the repository's visibility and verification rules."""

    rows: list[ResultView] = field(default_factory=list)
    fail_with: Exception | None = None

    def add(self, result: ResultView) -> ResultView:
        """Store ``result`` and return it."""
        self.rows.append(result)
        return result

    async def list_for_user(self, user_id: str, query: ResultQuery) -> ResultPage:
        """Newest first, filtered as the repository filters, paged by an offset cursor."""
        if self.fail_with is not None:
            raise self.fail_with
        for bound in (query.since, query.until):
            if bound is not None:
                # What asyncpg does with a timestamptz parameter: an instant outside years
                # 1-9999 in UTC raises OverflowError there, so it must here too (a 500).
                bound.astimezone(UTC)
        rows = [
            row
            for row in sorted(self.rows, key=lambda r: r.completed_at, reverse=True)
            if row.requested_by == user_id
            and (query.since is None or row.completed_at >= query.since)
            and (query.until is None or row.completed_at < query.until)
            and (query.model_name is None or row.model.name == query.model_name)
            and (query.status is None or row.status == query.status)
            and (query.study_uid is None or row.study_instance_uid == query.study_uid)
        ]
        offset = _decode_cursor(query.cursor) if query.cursor else 0
        page = rows[offset : offset + query.limit]
        more = offset + query.limit < len(rows)
        next_cursor = (
            base64.urlsafe_b64encode(str(offset + query.limit).encode()).decode() if more else None
        )
        return ResultPage(items=tuple(page), next_cursor=next_cursor)

    async def get(self, result_id: uuid.UUID, *, user_id: str | None) -> ResultView | None:
        """The result when visible to ``user_id`` (None: unrestricted)."""
        for row in self.rows:
            if row.result_id == result_id and (user_id is None or row.requested_by == user_id):
                return row
        return None

    async def mark_verified(self, result_id: uuid.UUID, *, user_id: str, note: str) -> ResultView:
        """Verify once; a second time is a conflict, an invisible result not found."""
        for index, row in enumerate(self.rows):
            if row.result_id == result_id and row.requested_by == user_id:
                if row.status == VerificationStatus.VERIFIED:
                    raise ConflictError(ErrorCode.RESULT_ALREADY_VERIFIED)
                verified = row.model_copy(
                    update={
                        "status": VerificationStatus.VERIFIED,
                        "verified_by": user_id,
                        "verified_at": datetime.now(UTC),
                        "verification_note": note,
                    }
                )
                self.rows[index] = verified
                return verified
        raise ResourceNotFoundError(ErrorCode.RESOURCE_NOT_FOUND, "no such result")


@dataclass
class FakeStudies:
    """Studies in memory; acknowledgements recorded as (study, user, alert ids)."""

    views: dict[str, StudyView] = field(default_factory=dict)
    unacknowledged: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    acknowledged: list[tuple[str, str, tuple[uuid.UUID, ...]]] = field(default_factory=list)
    fail: RadstreamError | None = None

    async def view(self, study_instance_uid: str) -> StudyView | None:
        if self.fail is not None:
            raise self.fail
        return self.views.get(study_instance_uid)

    async def acknowledge(
        self, study_instance_uid: str, user_id: str, at: datetime
    ) -> Sequence[uuid.UUID]:
        done = tuple(self.unacknowledged.pop(study_instance_uid, []))
        self.acknowledged.append((study_instance_uid, user_id, done))
        return done


@dataclass
class FakeLifecycle:
    """Lifecycles and submitters of events, in memory."""

    events: dict[uuid.UUID, tuple[str, list[LifecycleEntry]]] = field(default_factory=dict)

    def add(self, submitter: str) -> uuid.UUID:
        """Record an arrived-and-validated event of ``submitter``; return its id."""
        event_id = uuid.uuid4()
        at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
        self.events[event_id] = (
            submitter,
            [
                LifecycleEntry(state=LifecycleState.ARRIVED, stage=Stage.INGEST, at=at),
                LifecycleEntry(
                    state=LifecycleState.REJECTED,
                    stage=Stage.VALIDATION,
                    error_code=ErrorCode.IMAGE_EMPTY,
                    at=at + timedelta(seconds=1),
                ),
            ],
        )
        return event_id

    async def lifecycle(self, event_id: uuid.UUID) -> Sequence[LifecycleEntry]:
        """The entries, or none for an unknown event."""
        return self.events.get(event_id, ("", []))[1]

    async def submitted_by(self, event_id: uuid.UUID) -> str | None:
        """The submitter, or None for an unknown event."""
        found = self.events.get(event_id)
        return found[0] if found else None


@dataclass
class FakeModels:
    """A fixed registry."""

    models: list[ModelStatus] = field(
        default_factory=lambda: [
            ModelStatus(
                name="chest-xray",
                version="1.0.0",
                runtime="onnxruntime",
                digest=DIGEST,
                status="ready",
                default=True,
                input_spec={"width": 224, "height": 224, "modalities": ["CR", "DX"]},
            )
        ]
    )

    comparisons: list[ComparisonQuery] = field(default_factory=list)

    def list(self) -> Sequence[ModelStatus]:
        """Every model."""
        return self.models

    async def compare(self, query: ComparisonQuery) -> VersionComparison:
        """An empty comparison of the query's model; the query is recorded."""
        name = query.name
        if name != "chest-xray":
            raise ResourceNotFoundError(ErrorCode.MODEL_NOT_FOUND, f"model {name} is not installed")
        self.comparisons.append(query)
        report = compare_versions(
            f"{name}@{query.baseline or '1.0.0'}", f"{name}@{query.candidate or '2.0.0'}", []
        )
        return report.model_copy(update={"since": query.since, "until": query.until})


def settings_for(tmp_path: Path, **api: Any) -> Settings:
    """Test settings: storage under ``tmp_path``, the test secret, generous limits."""
    root = tmp_path / "storage"
    root.mkdir(exist_ok=True)
    api_values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "rate_limit_per_subject_per_minute": 1000,
        "rate_limit_global_per_minute": 10000,
    }
    api_values.update(api)
    return Settings(environment="test", storage_roots=(root,), api=api_values)


@dataclass
class Harness:
    """The app wired to fakes, a client, and everything a test inspects."""

    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient
    publisher: FakePublisher
    results: FakeResults
    lifecycle: FakeLifecycle
    models: FakeModels
    audit: FakeAudit
    clock: FakeClock
    registry: CollectorRegistry
    ready: dict[str, bool | None]
    studies: FakeStudies = field(default_factory=FakeStudies)

    @property
    def root(self) -> Path:
        """The first storage root."""
        return self.settings.storage_roots[0]

    def token(
        self, subject: str = "dr-house", roles: Sequence[str] = ("clinician",), **claims: Any
    ) -> str:
        """A valid HS256 token (claims override or, with value None, remove defaults)."""
        role_claim = roles if isinstance(roles, str) else list(roles)
        return make_token(self.settings, sub=subject, roles=role_claim, **claims)

    def auth(
        self, subject: str = "dr-house", roles: Sequence[str] = ("clinician",)
    ) -> dict[str, str]:
        """An Authorization header for ``subject`` with ``roles``."""
        return {"Authorization": f"Bearer {self.token(subject, roles)}"}


def make_token(
    settings: Settings,
    *,
    key: Any = None,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """Sign claims (defaults valid for ``settings``); a claim given as None is left out."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "dr-house",
        "roles": ["clinician"],
        "aud": settings.api.jwt_audience,
        "iss": settings.api.jwt_issuer,
        "iat": now,
        "exp": now + 300,
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    signing_key = settings.api.jwt_secret.get_secret_value() if key is None else key
    return jwt.encode(payload, signing_key, algorithm=algorithm, headers=headers)


def _readiness(flags: dict[str, bool | None]) -> dict[str, ReadinessCheck]:
    def check_for(name: str) -> ReadinessCheck:
        async def check() -> bool:
            if flags[name] is None:
                raise RadstreamError(ErrorCode.BROKER_UNAVAILABLE)
            return bool(flags[name])

        return check

    return {name: check_for(name) for name in flags}


def build_harness(
    tmp_path: Path,
    *,
    settings: Settings | None = None,
    today: date = date(2026, 11, 27),
    max_json_body_bytes: int = 1024 * 1024,
    **api: Any,
) -> Harness:
    """Build the app around fresh fakes (``api`` overrides ApiSettings fields)."""
    settings = settings or settings_for(tmp_path, **api)
    publisher, results, lifecycle = FakePublisher(), FakeResults(), FakeLifecycle()
    models, audit, clock, registry = FakeModels(), FakeAudit(), FakeClock(), CollectorRegistry()
    ready: dict[str, bool | None] = {"kafka": True, "database": True}
    studies = FakeStudies()
    app = create_app(
        settings,
        publisher=publisher,
        results=results,
        lifecycle=lifecycle,
        models=models,
        audit=audit,
        studies=studies,
        metrics=registry,
        readiness=_readiness(ready),
        clock=clock,
        today=lambda: today,
        max_json_body_bytes=max_json_body_bytes,
    )
    # httpx's ASGI transport, not Starlette's TestClient (deprecated with httpx, warns).
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.0.0.7", 5123))
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    return Harness(
        settings,
        app,
        client,
        publisher,
        results,
        lifecycle,
        models,
        audit,
        clock,
        registry,
        ready,
        studies,
    )
