"""``GET /models``, ``GET /models/{name}/comparison``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime

from gateway.auth import Principal, Role
from gateway.dependencies import Caller, Context, require_roles
from gateway.openapi_docs import ERROR_RESPONSES
from gateway.ports import ReadinessCheck
from schemas.api import ComparisonQuery, Health, ModelList, Readiness
from schemas.events import utc_now
from schemas.rollout import VersionComparison
from streams.inference.manifest import MODEL_NAME_PATTERN, MODEL_VERSION_PATTERN

router = APIRouter()
READINESS_TIMEOUT_SECONDS = 2.0
DEFAULT_COMPARISON_WINDOW = timedelta(hours=24)
Operator = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AUDITOR))]
Version = Annotated[str | None, Query(pattern=MODEL_VERSION_PATTERN, max_length=32)]
_log = structlog.get_logger("gateway")


@router.get("/models", tags=["models"], summary="The model registry", responses=ERROR_RESPONSES)
async def list_models(context: Context, _caller: Caller) -> ModelList:
    """Every registered model: name, version, runtime, digest, status and input spec."""
    return ModelList(models=tuple(context.models.list()))


@router.get(
    "/models/{name}/comparison",
    tags=["models"],
    summary="Compare a canary or shadow version with the active one",
    responses=ERROR_RESPONSES,
)
async def compare_versions(
    context: Context,
    _caller: Operator,
    *,
    name: Annotated[str, Path(pattern=MODEL_NAME_PATTERN, max_length=64)],
    candidate: Version = None,
    baseline: Version = None,
    since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with offset")] = None,
    until: Annotated[AwareDatetime | None, Query(description="ISO 8601 with offset")] = None,
) -> VersionComparison:
    """Agreement, decision cross-table and score deltas on the images both versions scored,
    and each version's failures by code and latency, over a window (default: the last 24 h).

    The candidate defaults to the canary, else the one version in shadow; the baseline to the
    active version. Admins and auditors only; the report holds no patient data.
    """
    end = until or utc_now()
    window_start = since or end - DEFAULT_COMPARISON_WINDOW
    return await context.models.compare(
        ComparisonQuery(name, window_start, end, candidate=candidate, baseline=baseline)
    )


@router.get("/healthz", tags=["operations"], summary="Liveness")
async def healthz() -> Health:
    """The process is up and answering."""
    return Health()


async def _check(name: str, check: ReadinessCheck) -> bool:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            return bool(await check())
    except Exception:  # noqa: BLE001 - a failing check means "not ready", whatever it raised
        _log.warning("readiness_check_failed", check=name)
        return False


@router.get(
    "/readyz",
    tags=["operations"],
    summary="Readiness: every dependency check passes",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is not ready"}},
)
async def readyz(context: Context) -> JSONResponse:
    """200 when every injected readiness check passes, else 503 with each check's verdict."""
    names = list(context.readiness)
    verdicts = await asyncio.gather(*(_check(n, context.readiness[n]) for n in names))
    checks = dict(zip(names, verdicts, strict=True))
    # The readiness probes are the API's reachability truth: its gauges follow them.
    if "database" in checks:
        context.metrics.set_database_up(checks["database"])
    if "kafka" in checks:
        context.metrics.set_broker_up(checks["kafka"])
    ready = all(verdicts)
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(context: Context) -> Response:
    """The gateway's registry in the Prometheus text format."""
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)
