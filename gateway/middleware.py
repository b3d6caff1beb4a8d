"""Pure ASGI middleware: correlation ids, security headers, request metrics, body limits.

Pure ASGI (not ``BaseHTTPMiddleware``) so request bodies stream through untouched and the limit
can stop reading at the first byte over it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import correlation_id_of, error_response
from gateway.metrics import ApiMetrics
from schemas.errors import ErrorCode

CORRELATION_HEADER = "X-Correlation-ID"
_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    # Results are patient-related: no browser or proxy may keep any answer of this API.
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
)
_log = structlog.get_logger("gateway")


def accepted_correlation_id(value: str | None) -> str:
    """The client's correlation id when it is safe to echo and log, else a fresh one."""
    if value is not None and _VALID_CORRELATION_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (no ids), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class HardeningMiddleware:
    """Outermost layer: correlation id, log context, security headers, metrics, safe 500s."""

    def __init__(
        self, app: ASGIApp, metrics: ApiMetrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP request; other ASGI traffic passes through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = accepted_correlation_id(_header(scope, b"x-correlation-id"))
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["correlation_id"] = correlation_id
        started = self.clock()
        status = {"code": 500, "started": False}

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                headers = [
                    (key, value)
                    for key, value in message.get("headers", [])
                    if key.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"x-correlation-id", correlation_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_hardened)
            except Exception:  # noqa: BLE001 - the last line of defence answers safely
                # Full detail goes to the service log only; the client gets the safe shape.
                _log.exception(
                    "api_request_failed", route=route_template(scope), correlation_id=correlation_id
                )
                if not status["started"]:
                    response = error_response(
                        ErrorCode.INTERNAL_ERROR,
                        "an unexpected error occurred; quote the correlation id",
                        correlation_id,
                    )
                    await response(scope, receive, send_hardened)
            finally:
                self.metrics.observe(
                    method=scope.get("method", ""),
                    route=route_template(scope),
                    status=int(status["code"]),
                    seconds=self.clock() - started,
                )


class _BodyTooLargeError(Exception):
    """Raised inside ``receive`` once the body passed its limit."""


class BodyLimitMiddleware:
    """Answer 413 ``PAYLOAD_TOO_LARGE`` as soon as a body passes its limit, without reading on.

    Multipart uploads (form data, and DICOMweb STOW-RS's multipart/related) get ``upload_limit``
    (the file limit plus framing); every other body gets ``json_limit``. The route sees a failing
    ``receive``; whatever it answers is replaced.
    """

    def __init__(self, app: ASGIApp, *, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    def _limit(self, scope: Scope) -> int:
        content_type = (_header(scope, b"content-type") or "").lower()
        if content_type.startswith(("multipart/form-data", "multipart/related")):
            return self.upload_limit
        return self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Enforce the body limit of one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send)
            return
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLargeError:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            await self._too_large(scope, receive, send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            ErrorCode.PAYLOAD_TOO_LARGE,
            "the request body is larger than allowed",
            correlation_id_of(scope),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
