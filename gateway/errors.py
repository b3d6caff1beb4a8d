"""Turn every failure into the API's one error shape ``{code, message, correlation_id}``.

Messages come from the error catalogue or from a ``RadstreamError``'s patient-data-free
``reason``; request-validation failures name the offending fields but never echo their values,
and unexpected exceptions answer ``INTERNAL_ERROR`` without a stack trace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import ErrorBody
from schemas.correlation import CorrelationId, accept_correlation_id, new_correlation_id
from schemas.errors import (
    AuthenticationError,
    ErrorCode,
    RadstreamError,
    RateLimitError,
    spec_for,
)

MAX_LISTED_FIELDS = 5
NOT_JSON = "invalid request: the body is not valid JSON"
_CODE_FOR_STATUS = {
    401: ErrorCode.AUTHENTICATION_FAILED,
    403: ErrorCode.AUTHORIZATION_FAILED,
    404: ErrorCode.RESOURCE_NOT_FOUND,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
}


def correlation_id_of(scope: Mapping[str, Any]) -> CorrelationId:
    """The correlation id the hardening middleware stored for this request.

    A fresh one outside the middleware (it is the outermost layer, so only an app assembled
    without it gets there).
    """
    state = scope.get("state") or {}
    value = state.get("correlation_id")
    return accept_correlation_id(value if isinstance(value, str) else None) or new_correlation_id()


def error_response(
    code: ErrorCode,
    message: str,
    correlation_id: str,
    *,
    status_code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON error response for ``code`` (status from the catalogue unless given)."""
    body = ErrorBody(code=code, message=message[:500], correlation_id=correlation_id)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status_code or spec_for(code).http_status,
        headers=dict(headers or {}),
    )


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """Name the invalid fields and why, without ever repeating the submitted values.

    A body that is not JSON at all has no fields to name: it gets one stable reason rather
    than the parser's character offset (``body.9``) or message.
    """
    if any(error.get("type") == "json_invalid" for error in errors):
        return NOT_JSON
    described: list[str] = []
    for error in list(errors)[:MAX_LISTED_FIELDS]:
        loc = [str(part) for part in error.get("loc", ())]
        kind = str(error.get("type", "invalid"))
        if kind == "extra_forbidden" and loc:
            # The unexpected key itself is client input (it could be a patient's name).
            loc[-1] = "<unexpected field>"
        described.append(f"{'.'.join(loc) or 'request'} ({kind})")
    more = len(errors) - len(described)
    suffix = f" and {more} more" if more > 0 else ""
    return "invalid request: " + "; ".join(described) + suffix


async def _radstream_error(request: Request, exc: Exception) -> JSONResponse:
    error = cast("RadstreamError", exc)  # registered for this class only
    headers: dict[str, str] = {}
    if isinstance(error, RateLimitError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_seconds)))
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="radstream"'
    return error_response(
        error.code,
        error.reason,
        correlation_id_of(request.scope),
        status_code=error.http_status,
        headers=headers,
    )


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    error = cast("RequestValidationError", exc)  # registered for this class only
    return error_response(
        ErrorCode.REQUEST_INVALID,
        describe_validation_errors(error.errors()),
        correlation_id_of(request.scope),
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    error = cast("StarletteHTTPException", exc)  # registered for this class only
    status = error.status_code
    default = ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.REQUEST_INVALID
    code = _CODE_FOR_STATUS.get(status, default)
    # The catalogue's description, never exc.detail: details may quote the request.
    return error_response(
        code,
        spec_for(code).description,
        correlation_id_of(request.scope),
        status_code=status,
        headers=error.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""
    app.add_exception_handler(RadstreamError, _radstream_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
