"""Turn pipeline events and API actions into unsigned audit record drafts.

Only codes, ids, UIDs and pseudonyms are copied. Free text an event carries (``reason``,
``detail``, ``image_uri``, ``decision``, dead-letter payloads) is never copied, because it could
hold patient data; a failure is described by its :class:`~schemas.errors.ErrorCode` value.

Correlation ids follow their owner's rule (``schemas/correlation.py``): a supplied id is kept
only in canonical form, and a refused one is replaced by the id derived from the message's
position, the same one the stage processing that message uses, so the trail and the pipeline
still join.

Drafts are deterministic functions of the event and its source coordinates (the event's own
timestamp is the record time), so auditing a redelivered event yields the same draft.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import cast

from pydantic import BaseModel, ValidationError

from schemas.audit import (
    ApiAction,
    ApiActionKind,
    AuditAction,
    AuditActor,
    AuditDraft,
    AuditEventType,
    AuditObject,
    AuditOutcome,
    AuditSource,
)
from schemas.correlation import CorrelationId, accept_correlation_id, derived_correlation_id
from schemas.errors import ErrorCode
from schemas.events import (
    DeadLetter,
    ImageArrived,
    ImageRejected,
    ImageValidated,
    InferenceCompleted,
    ResultExported,
    Stage,
)
from schemas.studies import UrgentFinding
from streams.topics import TopicKey

SourceEvent = (
    ImageArrived
    | ImageValidated
    | ImageRejected
    | InferenceCompleted
    | DeadLetter
    | ApiAction
    | ResultExported
    | UrgentFinding
)

EVENT_MODEL_FOR_TOPIC: dict[TopicKey, type[BaseModel]] = {
    TopicKey.IMAGES_ARRIVED: ImageArrived,
    TopicKey.IMAGES_VALIDATED: ImageValidated,
    TopicKey.IMAGES_REJECTED: ImageRejected,
    TopicKey.INFERENCE_RESULTS: InferenceCompleted,
    TopicKey.DEADLETTER: DeadLetter,
    TopicKey.API_ACTIONS: ApiAction,
    TopicKey.RESULTS_EXPORTED: ResultExported,
    TopicKey.ALERTS_URGENT: UrgentFinding,
    TopicKey.IMAGES_ARRIVED_STAT: ImageArrived,
    TopicKey.IMAGES_VALIDATED_STAT: ImageValidated,
}
"""Which event model each audited topic carries."""

AUDITED_TOPICS: tuple[TopicKey, ...] = tuple(EVENT_MODEL_FOR_TOPIC)

EVENT_TYPE_FOR_TOPIC: dict[TopicKey, AuditEventType] = {
    TopicKey.IMAGES_ARRIVED: AuditEventType.IMAGE_ARRIVED,
    TopicKey.IMAGES_VALIDATED: AuditEventType.IMAGE_VALIDATED,
    TopicKey.IMAGES_REJECTED: AuditEventType.IMAGE_REJECTED,
    TopicKey.INFERENCE_RESULTS: AuditEventType.INFERENCE_COMPLETED,
    TopicKey.DEADLETTER: AuditEventType.DEAD_LETTERED,
    TopicKey.API_ACTIONS: AuditEventType.API_SUBMIT,
    TopicKey.RESULTS_EXPORTED: AuditEventType.RESULT_EXPORTED,
    TopicKey.ALERTS_URGENT: AuditEventType.URGENT_FINDING_RAISED,
    TopicKey.IMAGES_ARRIVED_STAT: AuditEventType.IMAGE_ARRIVED,
    TopicKey.IMAGES_VALIDATED_STAT: AuditEventType.IMAGE_VALIDATED,
}

_API_TYPES: dict[ApiActionKind, tuple[AuditEventType, AuditAction]] = {
    ApiActionKind.SUBMIT: (AuditEventType.API_SUBMIT, AuditAction.CREATE),
    ApiActionKind.READ: (AuditEventType.API_READ, AuditAction.READ),
    ApiActionKind.VERIFY: (AuditEventType.API_VERIFY, AuditAction.UPDATE),
    ApiActionKind.AUTH_FAILURE: (AuditEventType.API_AUTH_FAILURE, AuditAction.EXECUTE),
    ApiActionKind.DLQ_PURGE: (AuditEventType.DLQ_PURGED, AuditAction.DELETE),
    ApiActionKind.DLQ_REPLAY: (AuditEventType.DLQ_REPLAYED, AuditAction.EXECUTE),
    ApiActionKind.MODEL_ADD: (AuditEventType.MODEL_ADDED, AuditAction.CREATE),
    ApiActionKind.MODEL_ROLLOUT: (AuditEventType.MODEL_ROLLOUT_CHANGED, AuditAction.UPDATE),
    ApiActionKind.URGENT_ACKNOWLEDGE: (
        AuditEventType.URGENT_FINDING_ACKNOWLEDGED,
        AuditAction.UPDATE,
    ),
}

_TOKEN = re.compile(r"^[A-Za-z0-9._@:/{}\-]{1,128}$")
ANONYMOUS_ACTOR = "anonymous"
UNKNOWN_ACTOR = "unknown"


def service_actor(stage: Stage) -> AuditActor:
    """The radstream service that performed a stage, as an audit actor."""
    return AuditActor(user_id=f"radstream-{stage.value}", is_requester=False)


def safe_token(value: str | None) -> str | None:
    """``value`` if it is a short opaque token, else a SHA-256 stand-in (never the text itself).

    Only for model names and versions, which come from radstream's model registry. Correlation
    ids never come here (:func:`_correlation`): a plain hash of a guessable value such as a
    record number is reversed by hashing every candidate.
    """
    if value is None or value == "":
        return None
    if _TOKEN.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def _model_parts(model_id: str | None) -> tuple[str | None, str | None]:
    """Split ``name@version`` (the ModelId form) into its parts."""
    if not model_id:
        return None, None
    name, _, version = model_id.partition("@")
    # ModelId versions may hold "+", which audit tokens do not; safe_token keeps them joinable.
    return safe_token(name), safe_token(version)


def _correlation(source: AuditSource, supplied: str | None) -> CorrelationId:
    """The supplied id when the rule accepts it, else the one derived from the message position.

    The stage that consumed the same message derives the same id (``Incoming.correlation_id``).
    """
    return accept_correlation_id(supplied) or derived_correlation_id(
        source.topic, source.partition, source.offset
    )


def draft_for_event(  # noqa: PLR0911 - one branch per audited event type
    event: SourceEvent, source: AuditSource, *, correlation_id: str | None = None
) -> AuditDraft:
    """The audit draft of one decoded event read at ``source``.

    Args:
        event: the decoded pipeline event or API action.
        source: the topic, partition and offset it was read from.
        correlation_id: the message's ``correlation_id`` header, for events without a
            correlation id field (a refused or missing one is replaced, see
            :func:`_correlation`).
    """
    if isinstance(event, ApiAction):
        return _api_draft(event, source)
    if isinstance(event, ImageArrived):
        return _arrived_draft(event, source, correlation_id)
    if isinstance(event, ImageValidated):
        return _validated_draft(event, source, correlation_id)
    if isinstance(event, ImageRejected):
        return _rejected_draft(event, source, correlation_id)
    if isinstance(event, InferenceCompleted):
        return _completed_draft(event, source)
    if isinstance(event, ResultExported):
        return _exported_draft(event, source)
    if isinstance(event, UrgentFinding):
        return _urgent_draft(event, source, correlation_id)
    return _dead_letter_draft(event, source)


def _image_object(event: ImageArrived | ImageValidated) -> AuditObject:
    """The image an arrival or validation is about."""
    return AuditObject(
        event_id=event.event_id,
        sop_instance_uid=event.sop_instance_uid,
        series_instance_uid=event.series_instance_uid,
        study_instance_uid=event.study_instance_uid,
    )


def _result_object(event: InferenceCompleted | ResultExported) -> AuditObject:
    """The result a completion or export is about, with the model version that made it.

    An export's object is the report instance it created (its own SOP instance and series) in
    the source study; a completion's is the image the result was made from.
    """
    sop: str | None
    series: str | None
    if isinstance(event, ResultExported):
        sop, series = event.report_sop_instance_uid, event.report_series_instance_uid
    else:
        sop, series = event.sop_instance_uid, event.series_instance_uid
    return AuditObject(
        event_id=event.event_id,
        result_id=event.result_id,
        sop_instance_uid=sop,
        series_instance_uid=series,
        study_instance_uid=event.study_instance_uid,
        model_name=safe_token(event.model.name),
        model_version=safe_token(event.model.version),
    )


def _arrived_draft(event: ImageArrived, source: AuditSource, corr: str | None) -> AuditDraft:
    return AuditDraft(
        event_type=AuditEventType.IMAGE_ARRIVED,
        action=AuditAction.CREATE,
        recorded_at=event.occurred_at,
        outcome=AuditOutcome.SUCCESS,
        actor=AuditActor(user_id=event.requested_by or event.source, is_requester=True),
        object=_image_object(event),
        correlation_id=_correlation(source, corr),
        source=source,
    )


def _validated_draft(event: ImageValidated, source: AuditSource, corr: str | None) -> AuditDraft:
    return AuditDraft(
        event_type=AuditEventType.IMAGE_VALIDATED,
        action=AuditAction.EXECUTE,
        recorded_at=event.validated_at,
        outcome=AuditOutcome.SUCCESS,
        actor=service_actor(Stage.VALIDATION),
        object=_image_object(event),
        correlation_id=_correlation(source, corr),
        source=source,
    )


def _rejected_draft(event: ImageRejected, source: AuditSource, corr: str | None) -> AuditDraft:
    # A retryable rejection will be tried again (RFC 3881 "minor": action restarted); any
    # other rejection terminated the action ("serious").
    outcome = AuditOutcome.MINOR_FAILURE if event.retryable else AuditOutcome.SERIOUS_FAILURE
    name, version = _model_parts(event.model_id)
    return AuditDraft(
        event_type=AuditEventType.IMAGE_REJECTED,
        action=AuditAction.EXECUTE,
        recorded_at=event.rejected_at,
        outcome=outcome,
        outcome_description=event.error_code.value,
        actor=service_actor(event.stage),
        object=AuditObject(
            event_id=event.event_id,
            study_instance_uid=event.study_instance_uid,
            model_name=name,
            model_version=version,
        ),
        correlation_id=_correlation(source, corr),
        source=source,
    )


def _completed_draft(event: InferenceCompleted, source: AuditSource) -> AuditDraft:
    return AuditDraft(
        event_type=AuditEventType.INFERENCE_COMPLETED,
        action=AuditAction.CREATE,
        recorded_at=event.completed_at,
        outcome=AuditOutcome.SUCCESS,
        actor=service_actor(Stage.INFERENCE),
        object=_result_object(event),
        correlation_id=event.effective_correlation_id(),
        source=source,
    )


def _urgent_draft(event: UrgentFinding, source: AuditSource, corr: str | None) -> AuditDraft:
    # Clinical decision support raised an alert: the finding and the rule are the outcome's
    # description (model tokens and rule names only, no free text).
    return AuditDraft(
        event_type=AuditEventType.URGENT_FINDING_RAISED,
        action=AuditAction.CREATE,
        recorded_at=event.raised_at,
        outcome=AuditOutcome.SUCCESS,
        outcome_description=safe_token(f"{event.finding}:{event.rule}"),
        actor=service_actor(Stage.STUDIES),
        object=AuditObject(
            study_instance_uid=event.study_instance_uid,
            model_name=safe_token(event.model_name),
            model_version=safe_token(event.model_version),
        ),
        correlation_id=_correlation(source, corr),
        source=source,
    )


def _exported_draft(event: ResultExported, source: AuditSource) -> AuditDraft:
    # PS3.15 A.5.3.5 "DICOM Instances Transferred": the report instance was created at the
    # destination.
    return AuditDraft(
        event_type=AuditEventType.RESULT_EXPORTED,
        action=AuditAction.CREATE,
        recorded_at=event.exported_at,
        outcome=AuditOutcome.SUCCESS,
        outcome_description=safe_token(event.destination),
        actor=service_actor(Stage.DICOM_EXPORT),
        object=_result_object(event),
        correlation_id=_correlation(source, event.correlation_id),
        source=source,
    )


def _dead_letter_draft(event: DeadLetter, source: AuditSource) -> AuditDraft:
    # A dead letter leaves the image unprocessed until someone replays it: "major" failure.
    return AuditDraft(
        event_type=AuditEventType.DEAD_LETTERED,
        action=AuditAction.EXECUTE,
        recorded_at=event.last_failure_at,
        outcome=AuditOutcome.MAJOR_FAILURE,
        outcome_description=event.error_code.value,
        actor=service_actor(event.stage),
        object=AuditObject(event_id=event.event_id, dead_letter_id=event.dead_letter_id),
        correlation_id=event.effective_correlation_id(),
        source=source,
    )


def _model_change(event: ApiAction) -> str | None:
    """What a successful model registry change did, as an audit-safe token.

    ``model_add``: the installed weights' ``sha256:<hex>``; ``model_rollout``: the new mode
    (``canary:<percent>`` for a canary). The previous mode is on the ``api.actions`` message the
    record's source points to, and in the chain's previous record of the same version.
    """
    if event.action is ApiActionKind.MODEL_ADD and event.weights_sha256:
        return f"sha256:{event.weights_sha256}"
    if event.action is ApiActionKind.MODEL_ROLLOUT and event.rollout_mode:
        if event.canary_percent is not None:
            return f"{event.rollout_mode.value}:{event.canary_percent}"
        return event.rollout_mode.value
    return None


def _api_draft(event: ApiAction, source: AuditSource) -> AuditDraft:
    event_type, action = _API_TYPES[event.action]
    if event.outcome == "success":
        outcome = AuditOutcome.SUCCESS
    elif event.http_status >= 500:
        outcome = AuditOutcome.MAJOR_FAILURE
    else:
        # The request was refused (auth, validation, conflict): the action was terminated.
        outcome = AuditOutcome.SERIOUS_FAILURE
    description = event.error_code.value if event.error_code else _model_change(event)
    return AuditDraft(
        event_type=event_type,
        action=action,
        recorded_at=event.occurred_at,
        outcome=outcome,
        outcome_description=description,
        actor=AuditActor(
            user_id=event.actor_id or ANONYMOUS_ACTOR,
            is_requester=True,
            roles=event.roles,
            network_address=event.network_address,
        ),
        object=AuditObject(
            event_id=event.event_id,
            result_id=event.result_id,
            study_instance_uid=event.study_instance_uid,
            model_name=safe_token(event.model_name),
            model_version=safe_token(event.model_version),
        ),
        correlation_id=_correlation(source, event.correlation_id),
        source=source,
    )


def decode_event(key: TopicKey, value: bytes) -> SourceEvent:
    """Decode a message of an audited topic into its event model.

    Raises:
        ValueError: the topic is not audited, or the bytes do not match its contract.
    """
    model = EVENT_MODEL_FOR_TOPIC.get(key)
    if model is None:
        raise ValueError(f"topic {key.value} is not audited")
    # The mapping pairs every audited topic with one of the SourceEvent models.
    return cast(SourceEvent, model.model_validate_json(value))


def draft_for_undecodable(
    key: TopicKey,
    source: AuditSource,
    message_time: datetime,
    *,
    correlation_id: str | None,
    code: ErrorCode = ErrorCode.EVENT_MALFORMED,
) -> AuditDraft:
    """The draft recording that a message on an audited topic broke its contract.

    The message is not copied (it may be anything, including patient data); the record says
    only where it was and that it was malformed, so the trail has no silent holes.
    """
    return AuditDraft(
        event_type=EVENT_TYPE_FOR_TOPIC[key],
        action=AuditAction.EXECUTE,
        recorded_at=message_time.astimezone(UTC),
        outcome=AuditOutcome.SERIOUS_FAILURE,
        outcome_description=code.value,
        actor=AuditActor(user_id=UNKNOWN_ACTOR, is_requester=False),
        object=AuditObject(),
        correlation_id=_correlation(source, correlation_id),
        source=source,
    )


def draft_for_message(
    key: TopicKey,
    value: bytes | None,
    source: AuditSource,
    message_time: datetime,
    *,
    correlation_id: str | None = None,
) -> AuditDraft:
    """The draft for one raw message of an audited topic, malformed or not; never raises.

    A message that breaks its contract is recorded as ``EVENT_MALFORMED``; a valid event whose
    draft cannot be built (a bug) as ``INTERNAL_ERROR``, so one message never stops the trail.
    """
    if value is None:  # a tombstone: nothing to decode
        return draft_for_undecodable(key, source, message_time, correlation_id=correlation_id)
    try:
        event = decode_event(key, value)
    except ValidationError:
        return draft_for_undecodable(key, source, message_time, correlation_id=correlation_id)
    try:
        return draft_for_event(event, source, correlation_id=correlation_id)
    except ValidationError:
        return draft_for_undecodable(
            key, source, message_time, correlation_id=correlation_id, code=ErrorCode.INTERNAL_ERROR
        )
