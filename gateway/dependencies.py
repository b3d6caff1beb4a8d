"""What routes share: the gateway's context, authentication, role checks and auditing."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from gateway.auth import Principal, Role, TokenVerifier, bearer_token
from gateway.errors import correlation_id_of
from gateway.ports import (
    ApiAuditPublisher,
    EventPublisher,
    LifecycleReader,
    ModelCatalog,
    ReadinessCheck,
    ResultsReader,
    StudyReader,
)
from gateway.rate_limit import RateLimiter
from observability.metrics import AuthReason, Metrics, RateLimitScope
from schemas.audit import ApiAction, ApiActionKind
from schemas.errors import (
    AuthenticationError,
    AuthorizationError,
    ErrorCode,
    RadstreamError,
    RateLimitError,
)
from schemas.settings import Settings
from streams.dicom_io.ingest import InstanceIngest

_log = structlog.get_logger("gateway")
_NETWORK_ADDRESS = re.compile(r"^[A-Za-z0-9.:\[\]_-]{1,64}$")
# Declared for the OpenAPI document; the header is parsed by `authenticated` itself.
bearer_scheme = HTTPBearer(auto_error=False, description="JWT bearer token (see docs/api.md)")


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """Everything the routes need, built once by :func:`gateway.app.create_app`."""

    settings: Settings
    verifier: TokenVerifier
    limiter: RateLimiter
    failed_auth_limiter: RateLimiter
    publisher: EventPublisher
    results: ResultsReader
    lifecycle: LifecycleReader
    models: ModelCatalog
    audit: ApiAuditPublisher
    metrics: Metrics
    readiness: Mapping[str, ReadinessCheck]
    today: Callable[[], date]
    dicom: InstanceIngest
    studies: StudyReader


def gateway_context(request: Request) -> GatewayContext:
    """The context stored on the application at creation."""
    context: GatewayContext = request.app.state.gateway
    return context


Context = Annotated[GatewayContext, Depends(gateway_context)]


def network_address(request: Request) -> str | None:
    """The peer address, when it is a plain address that is safe to record."""
    host = request.client.host if request.client else None
    return host if host and _NETWORK_ADDRESS.fullmatch(host) else None


def route_of(request: Request) -> str:
    """The route template of the request (``/results/{result_id}``), never a concrete path."""
    path = getattr(request.scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


@dataclass(frozen=True, slots=True)
class AuditedAction:
    """One caller's action on one resource, recorded for the audit trail as it ends.

    Every route audits the same way: a failure best-effort (the caller gets the error whether or
    not it was recorded), a success before the answer leaves. Built once per action, so the
    action, caller and resource are named once.
    """

    context: GatewayContext
    request: Request
    action: ApiActionKind
    principal: Principal | None
    result_id: uuid.UUID | None = None
    study_instance_uid: str | None = None

    async def succeeded(
        self, http_status: int = 200, *, event_id: uuid.UUID | None = None, required: bool = True
    ) -> None:
        """Record the success; with ``required`` a failure to record fails the request."""
        await self._record(http_status, event_id=event_id, required=required)

    async def failed(self, error: RadstreamError) -> None:
        """Record ``error`` as the action's outcome, best-effort."""
        await self._record(error.http_status, error_code=error.code, required=False)

    @asynccontextmanager
    async def failures(self) -> AsyncIterator[None]:
        """Record a :class:`RadstreamError` leaving the block as the action's failure."""
        try:
            yield
        except RadstreamError as exc:
            await self.failed(exc)
            raise

    async def _record(
        self,
        http_status: int,
        *,
        required: bool,
        error_code: ErrorCode | None = None,
        event_id: uuid.UUID | None = None,
    ) -> None:
        """Publish one :class:`ApiAction`; with ``required`` a failure to publish propagates."""
        principal = self.principal
        outcome: Literal["success", "failure"] = "success" if http_status < 400 else "failure"
        entry = ApiAction(
            action=self.action,
            actor_id=principal.subject if principal else None,
            roles=tuple(sorted(role.value for role in principal.roles)) if principal else (),
            outcome=outcome,
            http_status=http_status,
            route=route_of(self.request),
            event_id=event_id,
            result_id=self.result_id,
            correlation_id=correlation_id_of(self.request.scope),
            network_address=network_address(self.request),
            error_code=error_code,
            study_instance_uid=self.study_instance_uid,
        )
        try:
            await self.context.audit.publish(entry)
        except Exception:
            self.context.metrics.api_audit_publish_failed()
            _log.warning("api_action_not_audited", action=self.action.value, required=required)
            if required:
                raise


async def authenticated(
    request: Request,
    context: Context,
    _bearer: Annotated[object, Depends(bearer_scheme)] = None,
) -> Principal:
    """The verified caller, after the rate limits; 401 (audited) otherwise."""
    try:
        principal = context.verifier.verify(bearer_token(request.headers.get("authorization")))
    except AuthenticationError as exc:
        context.metrics.api_auth_decided(success=False, reason=AuthReason.UNAUTHENTICATED)
        # Failed attempts are throttled per peer address in their own buckets, so tokens cannot
        # be guessed quickly and a flood of bad tokens never spends valid callers' budget.
        rate_limited(
            context.failed_auth_limiter,
            context,
            f"address:{network_address(request)}",
            RateLimitScope.ANONYMOUS,
        )
        await AuditedAction(context, request, ApiActionKind.AUTH_FAILURE, None).failed(exc)
        raise
    context.metrics.api_auth_decided(success=True, reason=AuthReason.AUTHENTICATED)
    rate_limited(context.limiter, context, f"subject:{principal.subject}", RateLimitScope.SUBJECT)
    structlog.contextvars.bind_contextvars(actor_id=principal.subject)
    return principal


Caller = Annotated[Principal, Depends(authenticated)]


def rate_limited(
    limiter: RateLimiter, context: GatewayContext, key: str, scope: RateLimitScope
) -> None:
    """Charge ``key`` on ``limiter``; a refusal is counted (by scope) before it propagates."""
    try:
        limiter.check(key)
    except RateLimitError:
        context.metrics.api_rate_limit_hit(scope)
        raise


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers holding one of ``roles``; 403 (audited) otherwise."""

    async def dependency(request: Request, context: Context, principal: Caller) -> Principal:
        if principal.has_any(*roles):
            return principal
        context.metrics.api_auth_decided(success=False, reason=AuthReason.FORBIDDEN)
        error = AuthorizationError(
            ErrorCode.AUTHORIZATION_FAILED, "the caller's roles do not allow this action"
        )
        await AuditedAction(context, request, ApiActionKind.AUTH_FAILURE, principal).failed(error)
        raise error

    return dependency
