"""``POST /dicomweb/studies``: DICOMweb STOW-RS into the same store and arrival path as C-STORE.

Each ``application/dicom`` part goes through the shared :class:`InstanceIngest` (header, durable
content-addressed write, arrival event confirmed on the broker) and gets its own outcome in the
DICOM JSON answer: stored instances in the Referenced SOP Sequence, refused parts in the Failed SOP
Sequence with the DICOM failure reason and radstream's error code. One bad part does not stop the
others. Authenticated, role-checked, rate-limited and audited like ``POST /infer``; nothing the
client sent is echoed except well-formed UIDs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.auth import Principal, Role
from gateway.dependencies import AuditedAction, Context, GatewayContext, require_roles
from gateway.errors import correlation_id_of
from gateway.openapi_docs import ERROR_RESPONSES, STOW_REQUEST_BODY, STOW_RESPONSES
from gateway.related import DICOM_MEDIA_TYPE, RelatedPart, read_related_parts, related_boundary
from observability.metrics import SubmissionKind
from schemas.audit import ApiActionKind
from schemas.errors import ErrorCode, InputValidationError, RadstreamError
from streams.dicom import statuses
from streams.dicom.dicomweb import DICOM_JSON, StowFailed, StowStored, stow_response, stow_status
from streams.dicom.instances import referenced_uids

router = APIRouter(tags=["dicomweb"])
Submitter = Annotated[Principal, Depends(require_roles(Role.SERVICE, Role.CLINICIAN, Role.ADMIN))]
STOW_SOURCE = "dicomweb"


def _failed(error: RadstreamError, data: bytes) -> StowFailed:
    sop_class, sop_instance = referenced_uids(data) if data else (None, None)
    return StowFailed(
        failure_reason=statuses.failure_status(error),
        code=error.code,
        reason=error.reason,
        retryable=error.retryable,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
    )


def _refusal_of(part: RelatedPart) -> RadstreamError | None:
    if part.media_type != DICOM_MEDIA_TYPE:
        return InputValidationError(
            ErrorCode.REQUEST_INVALID, "every part must be application/dicom"
        )
    if part.too_large:
        return InputValidationError(
            ErrorCode.IMAGE_TOO_LARGE, "the instance is larger than the upload limit"
        )
    return None


async def _store_part(
    part: RelatedPart, request: Request, context: GatewayContext, principal: Principal
) -> StowStored | StowFailed:
    refusal = _refusal_of(part)
    if refusal is not None:
        return _failed(refusal, b"")
    audit = AuditedAction(context, request, ApiActionKind.SUBMIT, principal)
    try:
        ingested = await context.dicom.ingest(
            part.data,
            source=STOW_SOURCE,
            correlation_id=correlation_id_of(request.scope),
            requested_by=principal.subject,
        )
    except RadstreamError as exc:
        await audit.failed(exc)
        return _failed(exc, part.data)
    await audit.succeeded(event_id=ingested.event.event_id, required=False)
    context.metrics.api_submitted(SubmissionKind.DICOMWEB)
    return StowStored(ingested.instance.sop_class_uid, ingested.instance.sop_instance_uid)


@router.post(
    "/dicomweb/studies",
    summary="DICOMweb STOW-RS: store DICOM instances (multipart/related; type=application/dicom)",
    responses={**ERROR_RESPONSES, **STOW_RESPONSES},
    openapi_extra={"requestBody": STOW_REQUEST_BODY},
    response_class=JSONResponse,
)
async def store_instances(request: Request, context: Context, principal: Submitter) -> JSONResponse:
    """Store every part and answer per instance (200 all stored, 202 some, 409/503 none)."""
    boundary = related_boundary(request.headers.get("content-type", ""))
    parts = await read_related_parts(
        request.stream(),
        boundary,
        max_part_bytes=context.settings.api.max_upload_bytes,
        max_parts=context.settings.api.max_batch_items,
    )
    outcomes = [await _store_part(part, request, context, principal) for part in parts]
    stored = [o for o in outcomes if isinstance(o, StowStored)]
    failed = [o for o in outcomes if isinstance(o, StowFailed)]
    status = stow_status(stored, failed)
    headers = {"Retry-After": "5"} if status == 503 else {}
    return JSONResponse(
        stow_response(stored, failed), status_code=status, media_type=DICOM_JSON, headers=headers
    )
