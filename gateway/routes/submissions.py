"""``POST /infer`` and ``POST /infer/batch``: validate a submission and publish ``ImageArrived``."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gateway.auth import Principal, Role
from gateway.dependencies import AuditedAction, Context, GatewayContext, require_roles
from gateway.errors import correlation_id_of
from gateway.image_refs import resolve_image_uri
from gateway.openapi_docs import ERROR_RESPONSES, INFER_REQUEST_BODY
from gateway.uploads import receive_upload
from observability.metrics import SubmissionKind
from schemas.api import (
    BatchAccepted,
    BatchItemOutcome,
    BatchSubmission,
    ImageReference,
    SubmissionAccepted,
    UploadFields,
)
from schemas.audit import ApiActionKind
from schemas.correlation import with_correlation_header
from schemas.errors import ErrorCode, InputValidationError, RadstreamError
from schemas.events import ImageArrived
from streams.topics import arrival_topic

router = APIRouter(tags=["submissions"])
Submitter = Annotated[Principal, Depends(require_roles(Role.SERVICE, Role.CLINICIAN, Role.ADMIN))]
_SINGLE_VALUED = frozenset(UploadFields.model_fields) - {"model_ids"}


def status_url(event: ImageArrived) -> str:
    """Where the submitter follows the image (relative: never built from the Host header)."""
    return f"/events/{event.event_id}"


def _invalid_request(exc: ValidationError, prefix: str) -> RequestValidationError:
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    return RequestValidationError([{**error, "loc": (prefix, *error["loc"])} for error in errors])


def arrival_from_reference(
    reference: ImageReference, context: GatewayContext, principal: Principal
) -> ImageArrived:
    """The arrival event of an image reference, after checking it lies inside a storage root."""
    path = resolve_image_uri(reference.image_uri, context.settings.storage_roots)
    fields = reference.model_dump(exclude={"image_uri"})
    return ImageArrived(**fields, image_uri=path.as_uri(), requested_by=principal.subject)


async def publish_arrival(context: GatewayContext, request: Request, event: ImageArrived) -> None:
    """Publish ``event`` keyed by study UID (or event id) with the request's correlation id."""
    await context.publisher.publish(
        arrival_topic(event.priority),
        event.message_key(),
        event,
        with_correlation_header((), correlation_id_of(request.scope)),
    )


async def _arrival_from_json(
    request: Request, context: GatewayContext, principal: Principal
) -> ImageArrived:
    try:
        reference = ImageReference.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid_request(exc, "body") from None
    return arrival_from_reference(reference, context, principal)


def _form_values(fields: dict[str, list[str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, given in fields.items():
        if name in _SINGLE_VALUED and len(given) > 1:
            raise InputValidationError(ErrorCode.REQUEST_INVALID, "a form field is repeated")
        values[name] = given if name == "model_ids" else given[0]
    return values


async def _submit_upload(
    request: Request, context: GatewayContext, principal: Principal, content_type: str
) -> ImageArrived:
    stored = await receive_upload(
        request.stream(),
        content_type,
        root=context.settings.storage_roots[0],
        max_bytes=context.settings.api.max_upload_bytes,
        day=context.today(),
    )
    try:
        form = UploadFields.model_validate(_form_values(stored.fields))
        event = ImageArrived(
            **form.model_dump(),
            image_uri=stored.path.as_uri(),
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            requested_by=principal.subject,
        )
        await publish_arrival(context, request, event)
    except BaseException as exc:
        # No event refers to the file, so nothing would ever read or clean it up.
        await anyio.Path(stored.path).unlink(missing_ok=True)
        if isinstance(exc, ValidationError):
            raise _invalid_request(exc, "form") from None
        raise
    context.metrics.api_submitted(SubmissionKind.UPLOAD)
    return event


@router.post(
    "/infer",
    status_code=202,
    summary="Submit one image: a stored file's reference (JSON) or an upload (multipart)",
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
)
async def submit_image(
    request: Request, context: Context, principal: Submitter
) -> SubmissionAccepted:
    """Publish an ``ImageArrived`` for the image and answer with where to follow it."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    audit = AuditedAction(context, request, ApiActionKind.SUBMIT, principal)
    async with audit.failures():
        if media_type == "multipart/form-data":
            event = await _submit_upload(request, context, principal, content_type)
        elif media_type == "application/json":
            event = await _arrival_from_json(request, context, principal)
            await publish_arrival(context, request, event)
            context.metrics.api_submitted(SubmissionKind.REFERENCE)
        else:
            raise InputValidationError(
                ErrorCode.REQUEST_INVALID,
                "Content-Type must be application/json or multipart/form-data",
            )
    # The arrival event itself is audited by the pipeline; this entry adds who and from where.
    await audit.succeeded(202, event_id=event.event_id, required=False)
    return SubmissionAccepted(event_id=event.event_id, status_url=status_url(event))


async def _submit_item(
    index: int,
    reference: ImageReference,
    request: Request,
    context: GatewayContext,
    principal: Principal,
) -> BatchItemOutcome:
    try:
        event = arrival_from_reference(reference, context, principal)
        await publish_arrival(context, request, event)
    except RadstreamError as exc:
        return BatchItemOutcome(index=index, status="rejected", code=exc.code, message=exc.reason)
    context.metrics.api_submitted(SubmissionKind.REFERENCE)
    await AuditedAction(context, request, ApiActionKind.SUBMIT, principal).succeeded(
        202, event_id=event.event_id, required=False
    )
    return BatchItemOutcome(
        index=index, status="accepted", event_id=event.event_id, status_url=status_url(event)
    )


@router.post(
    "/infer/batch",
    status_code=202,
    summary="Submit several image references; each gets its own outcome",
    responses=ERROR_RESPONSES,
)
async def submit_batch(
    batch: BatchSubmission, request: Request, context: Context, principal: Submitter
) -> BatchAccepted:
    """Check and publish every item; one bad item does not stop the others."""
    limit = context.settings.api.max_batch_items
    if len(batch.items) > limit:
        raise InputValidationError(
            ErrorCode.REQUEST_INVALID, f"a batch holds at most {limit} items"
        )
    outcomes = [
        await _submit_item(index, item, request, context, principal)
        for index, item in enumerate(batch.items)
    ]
    accepted = sum(1 for outcome in outcomes if outcome.status == "accepted")
    return BatchAccepted(
        accepted=accepted, rejected=len(outcomes) - accepted, items=tuple(outcomes)
    )
