"""``/studies``: the status of a study, and a clinician's acknowledgement of its urgent findings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from gateway.auth import Principal, Role
from gateway.dependencies import AuditedAction, Context, require_roles
from gateway.openapi_docs import ERROR_RESPONSES
from schemas.audit import ApiActionKind
from schemas.errors import ErrorCode, ResourceNotFoundError
from schemas.events import utc_now
from schemas.studies import StudyAcknowledged, StudyView

router = APIRouter(prefix="/studies", tags=["studies"])

# Study status is clinical information: clinicians, auditors and admins read it; a submitting
# service does not. Acknowledging an urgent finding is a clinical act: clinicians only.
Reader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.AUDITOR, Role.ADMIN))]
Acknowledger = Annotated[Principal, Depends(require_roles(Role.CLINICIAN))]
StudyUid = Annotated[str, Path(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]


def _not_found() -> ResourceNotFoundError:
    return ResourceNotFoundError(ErrorCode.STUDY_NOT_FOUND, "no such study")


@router.get(
    "/{study_uid}",
    summary="Status of a study: receiving, complete, analysed or failed; counts and results",
    responses=ERROR_RESPONSES,
)
async def get_study(
    study_uid: StudyUid, request: Request, context: Context, principal: Reader
) -> StudyView:
    """The study's status, its series, lifecycle counts, study results and urgent findings."""
    view = await context.studies.view(study_uid)
    if view is None:
        raise _not_found()
    await AuditedAction(
        context, request, ApiActionKind.READ, principal, study_instance_uid=study_uid
    ).succeeded()
    return view


@router.post(
    "/{study_uid}/acknowledge",
    summary="A clinician acknowledges the study's urgent findings (audited)",
    responses=ERROR_RESPONSES,
)
async def acknowledge_study(
    study_uid: StudyUid, request: Request, context: Context, principal: Acknowledger
) -> StudyAcknowledged:
    """Acknowledge every unacknowledged urgent finding of the study; 404 for an unknown study.

    Acknowledging twice is not an error: the second call acknowledges nothing more and says so.
    """
    at = utc_now()
    audit = AuditedAction(
        context,
        request,
        ApiActionKind.URGENT_ACKNOWLEDGE,
        principal,
        study_instance_uid=study_uid,
    )
    async with audit.failures():
        if await context.studies.view(study_uid) is None:
            raise _not_found()
        acknowledged = await context.studies.acknowledge(study_uid, principal.subject, at)
    await audit.succeeded()
    return StudyAcknowledged(
        study_instance_uid=study_uid, acknowledged=tuple(acknowledged), acknowledged_at=at
    )
