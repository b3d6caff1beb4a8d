"""Pure ASGI middleware: correlation ids, security headers, request metrics, body limits.

The access log is written here (uvicorn's is off): one ``api_request_served`` line per request
with the method, the route *template* and the status, never the concrete path or query string,
which may carry a token (``?access_token=``) or patient data typed into a filter.

Pure ASGI (not ``BaseHTTPMiddleware``) so request bodies stream through untouched and the limit
can stop reading at the first byte over it.

A client's ``X-Correlation-ID`` is kept only when ``schemas/correlation.py`` accepts it (a UUID
or a 32/64-hex digest, in canonical form); anything else is replaced by a fresh id, which the
response names. The refused value is neither logged nor stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import correlation_id_of, error_response
from observability.logging import message_context
from observability.metrics import Metrics
from schemas.correlation import (
    CORRELATION_HTTP_HEADER,
    CorrelationId,
    accept_correlation_id,
    new_correlation_id,
)
from schemas.errors import ErrorCode

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
_CORRELATION_HEADER_NAME = CORRELATION_HTTP_HEADER.lower().encode()  # ASGI header names


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def request_correlation_id(scope: Scope) -> CorrelationId:
    """The client's correlation id when the rule accepts it (canonical), else a fresh one."""
    supplied = _header(scope, _CORRELATION_HEADER_NAME)
    return accept_correlation_id(supplied) or new_correlation_id()


def route_template(scope: Scope) -> str:
    """The matched route's path template (no ids), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class HardeningMiddleware:
    """Outermost layer: correlation id, log context, security headers, metrics, safe 500s."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP request; other ASGI traffic passes through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = request_correlation_id(scope)
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
                headers.append((_CORRELATION_HEADER_NAME, correlation_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with message_context(correlation_id):
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
                seconds = self.clock() - started
                route = route_template(scope)
                method = scope.get("method", "")
                self.metrics.api_request(route, method, int(status["code"]), seconds)
                _log.info(
                    "api_request_served",
                    method=method,
                    route=route,
                    status=int(status["code"]),
                    duration_ms=round(seconds * 1000, 1),
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
