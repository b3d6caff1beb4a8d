"""What routes share: the gateway's context, authentication, role checks and auditing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
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


async def record_action(
    context: GatewayContext,
    request: Request,
    *,
    action: ApiActionKind,
    principal: Principal | None,
    http_status: int,
    error_code: ErrorCode | None = None,
    event_id: uuid.UUID | None = None,
    result_id: uuid.UUID | None = None,
    study_instance_uid: str | None = None,
    required: bool = True,
) -> None:
    """Publish one :class:`ApiAction` for the audit trail.

    With ``required`` (reads, submissions, verifications) a failure to record propagates, so
    nothing is handed out unaudited; auth failures are recorded best-effort.
    """
    outcome: Literal["success", "failure"] = "success" if http_status < 400 else "failure"
    entry = ApiAction(
        action=action,
        actor_id=principal.subject if principal else None,
        roles=tuple(sorted(role.value for role in principal.roles)) if principal else (),
        outcome=outcome,
        http_status=http_status,
        route=route_of(request),
        event_id=event_id,
        result_id=result_id,
        correlation_id=correlation_id_of(request.scope),
        network_address=network_address(request),
        error_code=error_code,
        study_instance_uid=study_instance_uid,
    )
    try:
        await context.audit.publish(entry)
    except Exception:
        context.metrics.api_audit_publish_failed()
        _log.warning("api_action_not_audited", action=action.value, required=required)
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
        await record_action(
            context,
            request,
            action=ApiActionKind.AUTH_FAILURE,
            principal=None,
            http_status=exc.http_status,
            error_code=exc.code,
            required=False,
        )
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
        await record_action(
            context,
            request,
            action=ApiActionKind.AUTH_FAILURE,
            principal=principal,
            http_status=error.http_status,
            error_code=error.code,
            required=False,
        )
        raise error

    return dependency
