"""Audit drafts from events and API actions: codes and ids only, never free text."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

import streams.audit.records as records_module
from schemas.audit import (
    ApiActionKind,
    AuditAction,
    AuditEventType,
    AuditOutcome,
    AuditSource,
)
from schemas.errors import ErrorCode
from streams.audit.records import (
    ANONYMOUS_ACTOR,
    AUDITED_TOPICS,
    decode_event,
    draft_for_event,
    draft_for_message,
    safe_token,
)
from streams.topics import TopicKey
from tests.unit.audit.factories import (
    SOP,
    STUDY,
    T0,
    api_action,
    arrived,
    completed,
    dead_letter,
    rejected,
    source,
    validated,
)

pytestmark = pytest.mark.requirement("RS-AUD-01", "RS-API-07", "RS-G-02")

EID = uuid.UUID(int=7)


class TestPipelineEvents:
    def test_arrived(self) -> None:
        """An arrival is a successful create by the requesting user, with the image's UIDs."""
        event = arrived()
        draft = draft_for_event(event, source(3), correlation_id="c-1")
        assert (draft.event_type, draft.action, draft.outcome) == (
            AuditEventType.IMAGE_ARRIVED,
            AuditAction.CREATE,
            AuditOutcome.SUCCESS,
        )
        assert (draft.actor.user_id, draft.actor.is_requester) == ("dr.who", True)
        assert (draft.object.event_id, draft.object.study_instance_uid) == (event.event_id, STUDY)
        assert (draft.correlation_id, draft.source.offset, draft.recorded_at) == ("c-1", 3, T0)

    def test_arrived_without_requester_names_router(self) -> None:
        """Without a requester the router is the actor."""
        assert draft_for_event(arrived(requested_by=None), source()).actor.user_id == "router-1"

    def test_validated(self) -> None:
        """A validation is executed by the validation service."""
        draft = draft_for_event(validated(EID), source())
        assert (draft.event_type, draft.actor.user_id, draft.actor.is_requester) == (
            AuditEventType.IMAGE_VALIDATED,
            "radstream-validation",
            False,
        )
        assert draft.object.sop_instance_uid == SOP
        assert draft.recorded_at == T0 + timedelta(seconds=1)

    @pytest.mark.parametrize(
        ("retryable", "outcome"),
        [(True, AuditOutcome.MINOR_FAILURE), (False, AuditOutcome.SERIOUS_FAILURE)],
    )
    def test_rejected_outcome(self, retryable: bool, outcome: AuditOutcome) -> None:
        """A retryable rejection is a minor failure, any other a serious one."""
        draft = draft_for_event(rejected(EID, retryable=retryable), source())
        assert draft.outcome is outcome

    def test_rejected_keeps_code_not_reason(self) -> None:
        """A rejection records its error code and model, never its free-text reason."""
        draft = draft_for_event(rejected(EID, reason="Patient DOE^JANE bad"), source())
        assert draft.outcome_description == ErrorCode.IMAGE_MALFORMED.value
        assert (draft.object.model_name, draft.object.model_version) == ("chest-xray", "1.0.0")
        assert "DOE" not in draft.model_dump_json()

    def test_rejected_without_model(self) -> None:
        """A rejection before any model was chosen names no model."""
        event = rejected(EID).model_copy(update={"model_id": None})
        draft = draft_for_event(event, source())
        assert (draft.object.model_name, draft.object.model_version) == (None, None)

    def test_rejected_model_version_with_plus(self) -> None:
        """A ModelId version with '+' (not an audit token) becomes a digest, not an error."""
        event = rejected(EID).model_copy(update={"model_id": "chest-xray@1.0+cpu"})
        draft = draft_for_event(event, source())
        assert draft.object.model_name == "chest-xray"
        assert (draft.object.model_version or "").startswith("sha256:")

    def test_completed(self) -> None:
        """A result records the result id, model and version and its own correlation id."""
        event = completed(EID)
        draft = draft_for_event(event, source(), correlation_id="header")
        assert draft.object.result_id == event.result_id
        assert (draft.object.model_name, draft.object.model_version) == ("chest-xray", "1.0.0")
        assert draft.correlation_id == "corr-1"
        assert "abnormal" not in draft.model_dump_json()

    def test_dead_letter(self) -> None:
        """A dead letter is a major failure with its code; payload and reason are not copied."""
        event = dead_letter(EID, reason="DOE^JANE")
        draft = draft_for_event(event, source())
        assert (draft.outcome, draft.outcome_description) == (
            AuditOutcome.MAJOR_FAILURE,
            ErrorCode.INFERENCE_FAILED.value,
        )
        assert draft.object.dead_letter_id == event.dead_letter_id
        dumped = draft.model_dump_json()
        assert "DOE" not in dumped
        assert event.value_b64 not in dumped


class TestApiActions:
    @pytest.mark.parametrize(
        ("kind", "event_type", "action"),
        [
            (ApiActionKind.SUBMIT, AuditEventType.API_SUBMIT, AuditAction.CREATE),
            (ApiActionKind.READ, AuditEventType.API_READ, AuditAction.READ),
            (ApiActionKind.VERIFY, AuditEventType.API_VERIFY, AuditAction.UPDATE),
            (ApiActionKind.AUTH_FAILURE, AuditEventType.API_AUTH_FAILURE, AuditAction.EXECUTE),
            (ApiActionKind.DLQ_PURGE, AuditEventType.DLQ_PURGED, AuditAction.DELETE),
            (ApiActionKind.DLQ_REPLAY, AuditEventType.DLQ_REPLAYED, AuditAction.EXECUTE),
        ],
    )
    def test_kind_maps_to_type_and_action(
        self, kind: ApiActionKind, event_type: AuditEventType, action: AuditAction
    ) -> None:
        """Every API action kind has its event type and RFC 3881 action code."""
        draft = draft_for_event(api_action(kind), source())
        assert (draft.event_type, draft.action) == (event_type, action)

    def test_actor_details(self) -> None:
        """The actor is the requesting user with roles and network address."""
        draft = draft_for_event(api_action(), source())
        assert draft.actor.model_dump() == {
            "user_id": "dr.who",
            "is_requester": True,
            "roles": ("clinician",),
            "network_address": "10.0.0.1",
        }

    def test_refused_request_is_serious_failure(self) -> None:
        """A refused request (4xx) is a serious failure carrying its error code."""
        draft = draft_for_event(
            api_action(
                ApiActionKind.AUTH_FAILURE,
                actor_id=None,
                outcome="failure",
                http_status=401,
                error_code=ErrorCode.AUTHENTICATION_FAILED,
            ),
            source(),
        )
        assert (draft.outcome, draft.outcome_description, draft.actor.user_id) == (
            AuditOutcome.SERIOUS_FAILURE,
            "AUTHENTICATION_FAILED",
            ANONYMOUS_ACTOR,
        )

    def test_server_error_is_major_failure(self) -> None:
        """A request that failed inside the server is a major failure."""
        draft = draft_for_event(api_action(outcome="failure", http_status=503), source())
        assert draft.outcome is AuditOutcome.MAJOR_FAILURE


class TestMessages:
    def test_decodes_each_audited_topic(self) -> None:
        """Each audited topic's bytes decode to its event model."""
        samples = {
            TopicKey.IMAGES_ARRIVED: arrived(),
            TopicKey.IMAGES_VALIDATED: validated(EID),
            TopicKey.IMAGES_REJECTED: rejected(EID),
            TopicKey.INFERENCE_RESULTS: completed(EID),
            TopicKey.DEADLETTER: dead_letter(EID),
            TopicKey.API_ACTIONS: api_action(),
        }
        assert set(samples) == set(AUDITED_TOPICS)
        for key, event in samples.items():
            assert decode_event(key, event.model_dump_json().encode()) == event

    def test_unaudited_topic_refused(self) -> None:
        """The audit log itself is not an audited source."""
        with pytest.raises(ValueError, match="not audited"):
            decode_event(TopicKey.AUDIT_LOG, b"{}")

    def test_malformed_message_recorded_without_content(self) -> None:
        """A message breaking its contract is recorded as EVENT_MALFORMED without its bytes."""
        value = b'{"patient_name": "DOE^JANE"}'
        draft = draft_for_message(TopicKey.IMAGES_ARRIVED, value, source(), T0, correlation_id="c")
        assert (draft.event_type, draft.outcome, draft.outcome_description) == (
            AuditEventType.IMAGE_ARRIVED,
            AuditOutcome.SERIOUS_FAILURE,
            "EVENT_MALFORMED",
        )
        assert "DOE" not in draft.model_dump_json()

    def test_tombstone_recorded_as_malformed(self) -> None:
        """A null value is recorded as malformed, not dropped."""
        draft = draft_for_message(TopicKey.DEADLETTER, None, source(), T0)
        assert draft.event_type is AuditEventType.DEAD_LETTERED
        assert draft.outcome_description == "EVENT_MALFORMED"

    def test_valid_message(self) -> None:
        """A valid message's draft equals the event's draft."""
        event = arrived()
        raw = event.model_dump_json().encode()
        assert draft_for_message(TopicKey.IMAGES_ARRIVED, raw, source(), T0) == draft_for_event(
            event, source()
        )

    def test_draft_failure_recorded_not_raised(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A valid event whose draft cannot be built is recorded as INTERNAL_ERROR."""

        def broken(*_args: object, **_kwargs: object) -> object:
            return AuditSource.model_validate({})  # raises ValidationError

        monkeypatch.setattr(records_module, "draft_for_event", broken)
        raw = arrived().model_dump_json().encode()
        draft = draft_for_message(TopicKey.IMAGES_ARRIVED, raw, source(), T0)
        assert (draft.outcome, draft.outcome_description) == (
            AuditOutcome.SERIOUS_FAILURE,
            "INTERNAL_ERROR",
        )

    def test_deterministic_for_redelivery(self) -> None:
        """The same message audited twice gives the same draft."""
        raw = arrived().model_dump_json().encode()
        first = draft_for_message(TopicKey.IMAGES_ARRIVED, raw, source(), T0)
        assert draft_for_message(TopicKey.IMAGES_ARRIVED, raw, source(), T0) == first


class TestSafeToken:
    def test_plain_token_kept(self) -> None:
        """A plain correlation id is kept as is."""
        assert safe_token("req-123_abc") == "req-123_abc"

    def test_text_replaced_by_digest(self) -> None:
        """An id containing spaces or other text is replaced by a digest."""
        token = safe_token("John Doe 1970")
        assert token is not None
        assert token.startswith("sha256:")
        assert "John" not in token

    def test_empty_is_none(self) -> None:
        """No id gives None."""
        assert safe_token("") is None
        assert safe_token(None) is None
