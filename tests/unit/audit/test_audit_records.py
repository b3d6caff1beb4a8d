"""Audit drafts from events and API actions: codes and ids only, never free text."""

from __future__ import annotations

import re
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
from schemas.correlation import derived_correlation_id
from schemas.errors import ErrorCode
from schemas.events import Priority
from schemas.rollout import RolloutMode
from schemas.studies import UrgentFinding, urgent_alert_id
from streams.audit.records import (
    ANONYMOUS_ACTOR,
    AUDITED_TOPICS,
    decode_event,
    draft_for_event,
    draft_for_message,
    safe_token,
)
from streams.pipeline import Incoming
from streams.topics import TopicKey
from tests.unit.audit.factories import (
    API_CORRELATION,
    DEAD_LETTER_CORRELATION,
    EXPORT_CORRELATION,
    RESULT_CORRELATION,
    SOP,
    STUDY,
    T0,
    api_action,
    arrived,
    completed,
    dead_letter,
    exported,
    rejected,
    source,
    validated,
)

pytestmark = pytest.mark.requirement("RS-AUD-01", "RS-API-07", "RS-G-02")

EID = uuid.UUID(int=7)
CORR = "0a" * 16
PHI_IDS = ["MRN-55667788", "Pembertonwhistle-Agatha", "55667788", "Doe^Jane", "c-1"]


class TestPipelineEvents:
    def test_arrived(self) -> None:
        """An arrival is a successful create by the requesting user, with the image's UIDs."""
        event = arrived()
        draft = draft_for_event(event, source(3), correlation_id=CORR.upper())
        assert (draft.event_type, draft.action, draft.outcome) == (
            AuditEventType.IMAGE_ARRIVED,
            AuditAction.CREATE,
            AuditOutcome.SUCCESS,
        )
        assert (draft.actor.user_id, draft.actor.is_requester) == ("dr.who", True)
        assert (draft.object.event_id, draft.object.study_instance_uid) == (event.event_id, STUDY)
        assert (draft.correlation_id, draft.source.offset, draft.recorded_at) == (CORR, 3, T0)

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
        draft = draft_for_event(event, source(), correlation_id=CORR)
        assert draft.object.result_id == event.result_id
        assert (draft.object.model_name, draft.object.model_version) == ("chest-xray", "1.0.0")
        assert draft.correlation_id == RESULT_CORRELATION
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
            (ApiActionKind.MODEL_ADD, AuditEventType.MODEL_ADDED, AuditAction.CREATE),
            (ApiActionKind.MODEL_ROLLOUT, AuditEventType.MODEL_ROLLOUT_CHANGED, AuditAction.UPDATE),
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

    def test_every_kind_is_mapped(self) -> None:
        """No API action kind is left without an audit event type."""
        for kind in ApiActionKind:
            assert draft_for_event(api_action(kind), source()).event_type

    def test_rollout_change_records_the_version_and_its_new_mode(self) -> None:
        """A mode change names the model version and says the new mode (canary with share)."""
        draft = draft_for_event(
            api_action(
                ApiActionKind.MODEL_ROLLOUT,
                route="cli/models/canary",
                result_id=None,
                model_name="lesion-detector",
                model_version="1.2.0",
                previous_rollout_mode=RolloutMode.SHADOW,
                rollout_mode=RolloutMode.CANARY,
                canary_percent=10,
            ),
            source(),
        )
        assert (draft.object.model_name, draft.object.model_version) == ("lesion-detector", "1.2.0")
        assert draft.outcome_description == "canary:10"
        assert draft.outcome is AuditOutcome.SUCCESS

    def test_promotion_without_percent_records_the_mode(self) -> None:
        """An active (or shadow, staged, retired) mode is recorded by its value."""
        draft = draft_for_event(
            api_action(
                ApiActionKind.MODEL_ROLLOUT,
                model_name="m",
                model_version="2",
                rollout_mode=RolloutMode.ACTIVE,
            ),
            source(),
        )
        assert draft.outcome_description == "active"

    def test_added_model_records_its_weights_digest(self) -> None:
        """An added version is recorded with the SHA-256 of the weights installed."""
        digest = "ab" * 32
        draft = draft_for_event(
            api_action(
                ApiActionKind.MODEL_ADD, model_name="m", model_version="1+cu", weights_sha256=digest
            ),
            source(),
        )
        assert draft.outcome_description == f"sha256:{digest}"
        assert draft.object.model_version is not None
        assert draft.object.model_version.startswith("sha256:")  # "+" is not an audit token

    def test_refused_model_change_records_the_code(self) -> None:
        """A refused change is a serious failure described by its error code, not the mode."""
        draft = draft_for_event(
            api_action(
                ApiActionKind.MODEL_ROLLOUT,
                outcome="failure",
                http_status=409,
                error_code=ErrorCode.MODEL_REGISTRY_CONFLICT,
                model_name="m",
                model_version="2",
                rollout_mode=RolloutMode.RETIRED,
            ),
            source(),
        )
        assert (draft.outcome, draft.outcome_description) == (
            AuditOutcome.SERIOUS_FAILURE,
            "MODEL_REGISTRY_CONFLICT",
        )

    def test_server_error_is_major_failure(self) -> None:
        """A request that failed inside the server is a major failure."""
        draft = draft_for_event(api_action(outcome="failure", http_status=503), source())
        assert draft.outcome is AuditOutcome.MAJOR_FAILURE


class TestResultExported:
    def test_export_is_a_created_report_in_the_source_study(self) -> None:
        """An export is audited as the report instance created at its destination."""
        draft = draft_for_event(exported(EID), source())
        assert (draft.event_type, draft.action, draft.outcome) == (
            AuditEventType.RESULT_EXPORTED,
            AuditAction.CREATE,
            AuditOutcome.SUCCESS,
        )
        assert draft.object.event_id == EID
        assert draft.object.sop_instance_uid == "2.25.2"
        assert draft.object.study_instance_uid == STUDY
        assert (draft.object.model_name, draft.object.model_version) == ("chest-xray", "1.0.0")
        assert draft.actor.user_id == "radstream-dicom_export"
        assert draft.outcome_description == "PACS"
        assert draft.correlation_id == EXPORT_CORRELATION


def urgent() -> UrgentFinding:
    """An urgent finding raised by a study-level rule."""
    return UrgentFinding(
        alert_id=urgent_alert_id(STUDY, "chest-xray", "abnormal"),
        study_instance_uid=STUDY,
        model_name="chest-xray",
        model_version="1.0.0",
        finding="abnormal",
        score=0.97,
        rule="abnormal-study",
        priority=Priority.STAT,
    )


class TestUrgentFindingRecords:
    def test_urgent_finding_is_recorded_without_phi(self) -> None:
        """A raised finding: the study, the model, finding:rule as outcome, the studies stage."""
        draft = draft_for_event(urgent(), source())
        assert (draft.event_type, draft.action) == (
            AuditEventType.URGENT_FINDING_RAISED,
            AuditAction.CREATE,
        )
        assert draft.object.study_instance_uid == STUDY
        assert draft.outcome_description == "abnormal:abnormal-study"
        assert draft.actor.user_id == "radstream-studies"

    def test_acknowledgement_names_the_study(self) -> None:
        """An acknowledgement through the API is an update of the study, by the clinician."""
        action = api_action().model_copy(
            update={"action": ApiActionKind.URGENT_ACKNOWLEDGE, "study_instance_uid": STUDY}
        )
        draft = draft_for_event(action, source())
        assert (draft.event_type, draft.action) == (
            AuditEventType.URGENT_FINDING_ACKNOWLEDGED,
            AuditAction.UPDATE,
        )
        assert draft.object.study_instance_uid == STUDY


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
            TopicKey.RESULTS_EXPORTED: exported(EID),
            TopicKey.ALERTS_URGENT: urgent(),
            TopicKey.IMAGES_ARRIVED_STAT: arrived(),
            TopicKey.IMAGES_VALIDATED_STAT: validated(EID),
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


class TestCorrelationIds:
    @pytest.mark.parametrize("supplied", [*PHI_IDS, None])
    def test_refused_header_is_replaced_by_the_position_id(self, supplied: str | None) -> None:
        """A refused or missing header becomes the id derived from topic/partition/offset."""
        at = source(5)
        draft = draft_for_event(arrived(), at, correlation_id=supplied)
        assert draft.correlation_id == derived_correlation_id(at.topic, at.partition, at.offset)
        if supplied:
            # As a token of its own: a short id such as "c-1" also turns up by chance inside
            # the record's random UUIDs ("…abc-1f…"), which is not a leak.
            standalone = rf"(?<![0-9a-f-]){re.escape(supplied)}(?![0-9a-f-])"
            assert re.search(standalone, draft.model_dump_json()) is None

    def test_replacement_joins_the_stage_that_read_the_same_message(self) -> None:
        """The audit agent and the stage derive the same id for one refused arrival header."""
        event = arrived()
        at = source(9)
        raw = event.model_dump_json().encode()
        headers = (("correlation_id", b"MRN-55667788"),)
        stage_view = Incoming(at.topic, at.partition, at.offset, None, raw, headers)
        draft = draft_for_message(
            TopicKey.IMAGES_ARRIVED, raw, at, T0, correlation_id="MRN-55667788"
        )
        assert draft.correlation_id == stage_view.correlation_id

    @pytest.mark.parametrize("supplied", PHI_IDS)
    def test_malformed_message_header_is_replaced(self, supplied: str) -> None:
        """The record of a malformed message does not keep its refused header either."""
        at = source(2)
        draft = draft_for_message(TopicKey.IMAGES_ARRIVED, b"{", at, T0, correlation_id=supplied)
        assert draft.correlation_id == derived_correlation_id(at.topic, at.partition, at.offset)

    @pytest.mark.parametrize("supplied", PHI_IDS)
    def test_result_with_refused_id_gets_one_derived_from_its_result_id(
        self, supplied: str
    ) -> None:
        """A result written with a refused id is recorded under an id derived from it."""
        event = completed(EID).model_copy(update={"correlation_id": supplied})
        draft = draft_for_event(event, source(), correlation_id=CORR)
        assert draft.correlation_id == derived_correlation_id("result", event.result_id)

    @pytest.mark.parametrize("supplied", [*PHI_IDS, None])
    def test_dead_letter_with_refused_id_gets_one_derived_from_its_id(
        self, supplied: str | None
    ) -> None:
        """A dead letter from before the rule is recorded under its derived id, not the text."""
        event = dead_letter(EID).model_copy(update={"correlation_id": supplied})
        draft = draft_for_event(event, source(), correlation_id=CORR)
        assert draft.correlation_id == derived_correlation_id("dead-letter", event.dead_letter_id)

    def test_dead_letter_keeps_its_own_valid_id(self) -> None:
        """A dead letter radstream wrote keeps its id in the trail."""
        assert draft_for_event(dead_letter(EID), source()).correlation_id == (
            DEAD_LETTER_CORRELATION
        )

    @pytest.mark.parametrize("supplied", ["MRN-55667788", "Pembertonwhistle-Agatha"])
    def test_api_action_with_refused_id_is_replaced(self, supplied: str) -> None:
        """An API action carrying a refused id (forged or from an old release) is not copied."""
        at = source(4)
        draft = draft_for_event(api_action(correlation_id=supplied), at)
        assert draft.correlation_id == derived_correlation_id(at.topic, at.partition, at.offset)

    def test_api_action_keeps_its_valid_id(self) -> None:
        """An API action's own (canonical) id is kept."""
        assert draft_for_event(api_action(), source()).correlation_id == API_CORRELATION


class TestSafeToken:
    def test_plain_token_kept(self) -> None:
        """A plain model name is kept as is."""
        assert safe_token("chest-xray_v2") == "chest-xray_v2"

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
