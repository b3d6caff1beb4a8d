"""Build the FastAPI application from settings and ports (the composition root calls this)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry
from starlette.middleware.cors import CORSMiddleware

from gateway.auth import TokenVerifier
from gateway.dependencies import GatewayContext
from gateway.errors import install_error_handlers
from gateway.middleware import BodyLimitMiddleware, HardeningMiddleware
from gateway.openapi_docs import add_upload_schema
from gateway.ports import (
    ApiAuditPublisher,
    EventPublisher,
    LifecycleReader,
    ModelCatalog,
    NoStudies,
    ReadinessCheck,
    ResultsReader,
    StudyReader,
)
from gateway.rate_limit import Clock, RateLimiter
from gateway.routes import dicomweb as dicomweb_routes
from gateway.routes import lifecycle as lifecycle_routes
from gateway.routes import operations as operation_routes
from gateway.routes import results as result_routes
from gateway.routes import studies as study_routes
from gateway.routes import submissions as submission_routes
from observability.metrics import Metrics
from schemas.correlation import CORRELATION_HTTP_HEADER
from schemas.settings import Settings
from streams.dicom_io.ingest import InstanceIngest

API_TITLE = "radstream API"
API_VERSION = "1.0.0"
MAX_JSON_BODY_BYTES = 1024 * 1024
# Multipart framing (boundaries, part headers, form fields) on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _utc_today() -> date:
    return datetime.now(UTC).date()


def _cors_origins(origins: Sequence[str]) -> list[str]:
    """The explicit origin allow-list; a wildcard would let any site read results."""
    for origin in origins:
        if "*" in origin:
            raise ValueError("api.cors_allow_origins must list explicit origins, not '*'")
    return list(origins)


def create_app(
    settings: Settings,
    *,
    publisher: EventPublisher,
    results: ResultsReader,
    lifecycle: LifecycleReader,
    models: ModelCatalog,
    audit: ApiAuditPublisher,
    studies: StudyReader | None = None,
    metrics: CollectorRegistry | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    clock: Clock = time.monotonic,
    today: Callable[[], date] = _utc_today,
    max_json_body_bytes: int = MAX_JSON_BODY_BYTES,
) -> FastAPI:
    """The HTTP gateway wired to the given ports.

    Args:
        settings: the one Settings object; ``settings.api`` holds JWT trust, limits and CORS.
        publisher: publishes ``ImageArrived`` events.
        results: reads and verifies results through the caller's visibility.
        lifecycle: reads an image's lifecycle and its submitter.
        models: lists the model registry.
        audit: records ``ApiAction`` entries for the audit trail.
        studies: reads study status and records acknowledgements (none: no study is known).
        metrics: the registry ``/metrics`` serves (a private one when None).
        readiness: named async checks ``/readyz`` runs.
        clock: monotonic seconds, for the rate limiters (tests pass a fake).
        today: the UTC date, naming the per-day upload folder.
        max_json_body_bytes: the limit on every non-multipart request body.

    Raises:
        ValueError: weak or inconsistent security settings (short HS256 secret, missing or
            mismatched public key, wildcard CORS origin).
    """
    verifier = TokenVerifier(settings.api)
    api_metrics = Metrics(metrics if metrics is not None else CollectorRegistry())
    context = GatewayContext(
        settings=settings,
        verifier=verifier,
        limiter=RateLimiter(
            settings.api.rate_limit_per_subject_per_minute,
            settings.api.rate_limit_global_per_minute,
            clock,
        ),
        failed_auth_limiter=RateLimiter(
            settings.api.rate_limit_failed_auth_per_address_per_minute, None, clock
        ),
        publisher=publisher,
        results=results,
        lifecycle=lifecycle,
        models=models,
        audit=audit,
        metrics=api_metrics,
        readiness=dict(readiness or {}),
        today=today,
        # STOW-RS shares the DICOM receiver's ingest path, publishing through the same port.
        dicom=InstanceIngest.from_settings(settings, publisher),
        studies=studies if studies is not None else NoStudies(),
    )
    origins = _cors_origins(settings.api.cors_allow_origins)

    app = FastAPI(
        title=API_TITLE,
        version=API_VERSION,
        description="Submit images to radstream, follow them, read and verify results.",
        # No Swagger UI or ReDoc: they need scripts the Content-Security-Policy forbids.
        docs_url=None,
        redoc_url=None,
        # No trailing-slash redirects: Starlette builds them absolute from the client's Host
        # header (``Host: evil.example`` -> ``307 http://evil.example/...``); a wrong path is 404.
        redirect_slashes=False,
    )
    app.state.gateway = context
    install_error_handlers(app)
    for module in (
        submission_routes,
        result_routes,
        lifecycle_routes,
        operation_routes,
        dicomweb_routes,
        study_routes,
    ):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = add_upload_schema(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # Added innermost first: the body limit sits inside CORS, which sits inside hardening.
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=max_json_body_bytes,
        upload_limit=settings.api.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", CORRELATION_HTTP_HEADER],
        expose_headers=[CORRELATION_HTTP_HEADER, "Retry-After"],
        max_age=600,
    )
    app.add_middleware(HardeningMiddleware, metrics=api_metrics)
    return app
