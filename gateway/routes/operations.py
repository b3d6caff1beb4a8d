"""``GET /models``, ``GET /healthz``, ``GET /readyz`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.dependencies import Caller, Context
from gateway.openapi_docs import ERROR_RESPONSES
from gateway.ports import ReadinessCheck
from schemas.api import Health, ModelList, Readiness

router = APIRouter()
READINESS_TIMEOUT_SECONDS = 2.0
_log = structlog.get_logger("gateway")


@router.get("/models", tags=["models"], summary="The model registry", responses=ERROR_RESPONSES)
async def list_models(context: Context, _caller: Caller) -> ModelList:
    """Every registered model: name, version, runtime, digest, status and input spec."""
    return ModelList(models=tuple(context.models.list()))


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
