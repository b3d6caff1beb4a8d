"""``GET /results``, ``GET /results/{result_id}``, ``POST /results/{result_id}/verify``.

A caller only ever sees results it may see; anything else is 404, never 403, so result ids
cannot be probed. Every read and verification is recorded for the audit trail before the
answer leaves.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from gateway.auth import Principal, Role
from gateway.dependencies import AuditedAction, Context, require_roles
from gateway.openapi_docs import ERROR_RESPONSES
from schemas.api import (
    Cursor,
    ModelName,
    ResultPage,
    ResultQuery,
    ResultView,
    UtcTimestamp,
    Verification,
    VerificationStatus,
)
from schemas.audit import ApiActionKind
from schemas.errors import ErrorCode, InputValidationError, ResourceNotFoundError
from schemas.events import Uid

router = APIRouter(prefix="/results", tags=["results"])
Reader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.SERVICE, Role.ADMIN))]
Verifier = Annotated[Principal, Depends(require_roles(Role.CLINICIAN))]
MAX_PAGE = 100


def _not_found() -> ResourceNotFoundError:
    return ResourceNotFoundError(ErrorCode.RESOURCE_NOT_FOUND, "no such result")


@router.get("", summary="The caller's results, newest first", responses=ERROR_RESPONSES)
async def list_results(  # noqa: PLR0917 - FastAPI maps each query parameter to an argument
    request: Request,
    context: Context,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[Cursor | None, Query()] = None,
    since: Annotated[UtcTimestamp | None, Query(description="ISO 8601 with offset")] = None,
    until: Annotated[UtcTimestamp | None, Query(description="ISO 8601 with offset")] = None,
    model: Annotated[ModelName | None, Query()] = None,
    status: Annotated[VerificationStatus | None, Query()] = None,
    study_uid: Annotated[Uid | None, Query()] = None,
) -> ResultPage:
    """One page of the caller's results, filtered by time, model, status and study."""
    if since is not None and until is not None and since > until:
        raise InputValidationError(ErrorCode.REQUEST_INVALID, "since must not be after until")
    query = ResultQuery(
        limit=limit,
        cursor=cursor,
        since=since,
        until=until,
        model_name=model,
        status=status,
        study_uid=study_uid,
    )
    page = await context.results.list_for_user(principal.subject, query)
    await AuditedAction(context, request, ApiActionKind.READ, principal).succeeded()
    return page


@router.get("/{result_id}", summary="One result with its provenance", responses=ERROR_RESPONSES)
async def get_result(
    result_id: uuid.UUID, request: Request, context: Context, principal: Reader
) -> ResultView:
    """The result, when the caller may see it (admins see all)."""
    audit = AuditedAction(context, request, ApiActionKind.READ, principal, result_id=result_id)
    visible_to = None if Role.ADMIN in principal.roles else principal.subject
    result = await context.results.get(result_id, user_id=visible_to)
    if result is None:
        error = _not_found()
        await audit.failed(error)
        raise error
    await audit.succeeded(event_id=result.event_id)
    return result


@router.post(
    "/{result_id}/verify",
    summary="A clinician verifies one of their results (once, with a note)",
    responses=ERROR_RESPONSES,
)
async def verify_result(
    result_id: uuid.UUID,
    verification: Verification,
    request: Request,
    context: Context,
    principal: Verifier,
) -> ResultView:
    """Mark the result verified by the caller; a second verification is 409."""
    audit = AuditedAction(context, request, ApiActionKind.VERIFY, principal, result_id=result_id)
    async with audit.failures():
        result = await context.results.mark_verified(
            result_id, user_id=principal.subject, note=verification.note
        )
    await audit.succeeded(event_id=result.event_id)
    return result
