"""``GET /events/{event_id}``: what the pipeline did with a submitted image."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from gateway.auth import Role
from gateway.dependencies import AuditedAction, Caller, Context
from gateway.openapi_docs import ERROR_RESPONSES
from schemas.api import EventLifecycle
from schemas.audit import ApiActionKind
from schemas.errors import ErrorCode, ResourceNotFoundError

router = APIRouter(tags=["events"])


@router.get(
    "/events/{event_id}",
    summary="Lifecycle of a submitted image (submitter, auditor or admin only)",
    responses=ERROR_RESPONSES,
)
async def get_lifecycle(
    event_id: uuid.UUID, request: Request, context: Context, principal: Caller
) -> EventLifecycle:
    """The image's steps, oldest first; 404 for unknown events and for other callers' events."""
    overseer = principal.has_any(Role.AUDITOR, Role.ADMIN)
    if not overseer and await context.lifecycle.submitted_by(event_id) != principal.subject:
        # Same answer as for an unknown event: event ids cannot be probed.
        raise ResourceNotFoundError(ErrorCode.RESOURCE_NOT_FOUND, "no such event")
    entries = await context.lifecycle.lifecycle(event_id)
    if not entries:
        raise ResourceNotFoundError(ErrorCode.RESOURCE_NOT_FOUND, "no such event")
    await AuditedAction(context, request, ApiActionKind.READ, principal).succeeded(
        event_id=event_id
    )
    return EventLifecycle(event_id=event_id, entries=tuple(entries))
