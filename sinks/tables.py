"""The tables radstream stores, as SQLAlchemy Core metadata.

This describes the schema for queries and for Alembic's comparison test; the tables themselves
are created only by the migrations in ``sinks/migrations/versions/`` (a test checks both agree).
Index names are part of the contract: ``EXPLAIN`` tests look for them.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from schemas.audit import LEGACY_AUDIT_TOPIC
from schemas.rollout import ResultRole

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LifecycleState(StrEnum):
    """What happened to an arrival, one row per state in ``image_events``."""

    ARRIVED = "arrived"
    VALIDATED = "validated"
    REJECTED = "rejected"
    INFERRED = "inferred"
    FAILED = "failed"
    STORED = "stored"


ROLE_KNOWN = "role IN (" + ", ".join(f"'{role.value}'" for role in ResultRole) + ")"


def _tz() -> DateTime:
    return DateTime(timezone=True)


def _inserted_at(name: str) -> Column[object]:
    """A timestamp the database sets when the row is inserted."""
    return Column(name, _tz(), nullable=False, server_default=func.now())


def _model_version(*, nullable: bool = False) -> tuple[Column[object], Column[object]]:
    """The model name and version columns, as wide as a ``ModelRef`` allows."""
    return (
        Column("model_name", String(64), nullable=nullable),
        Column("model_version", String(32), nullable=nullable),
    )


inference_results = Table(
    "inference_results",
    metadata,
    Column("result_id", UUID(as_uuid=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    *_model_version(),
    Column("weights_sha256", String(64), nullable=False),
    Column("runtime", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("input_sha256", String(64), nullable=False),
    Column("verdicts", JSONB, nullable=False),
    Column("thresholds", JSONB, nullable=False),
    Column("scores", JSONB, nullable=False),
    Column("decision", String(64), nullable=False),
    Column("inference_seconds", Double, nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("requested_by", String(64)),
    Column("study_instance_uid", String(64)),
    Column("series_instance_uid", String(64)),
    Column("sop_instance_uid", String(64)),
    Column("modality", String(16)),
    Column("source", String(64)),
    Column("occurred_at", _tz(), nullable=False),
    Column("completed_at", _tz(), nullable=False),
    _inserted_at("stored_at"),
    Column("verified_by", String(64)),
    Column("verified_at", _tz()),
    Column("verification_note", Text),
    # 'shadow': kept for comparing model versions, never in the default views (migration 0007).
    Column("role", String(16), nullable=False, server_default=ResultRole.PUBLISHED.value),
    # The natural key: a redelivered or re-inferred event never makes a second row.
    UniqueConstraint(
        "event_id", "model_name", "model_version", name="uq_inference_results_natural_key"
    ),
    CheckConstraint("(verified_by IS NULL) = (verified_at IS NULL)", name="verification_complete"),
    CheckConstraint("char_length(verification_note) <= 2000", name="verification_note_length"),
    CheckConstraint(ROLE_KNOWN, name="role_known"),
)

# "My results, newest first" with keyset paging on (completed_at, result_id): the index order
# matches ORDER BY completed_at DESC, result_id DESC exactly, so pages never sort.
Index(
    "ix_inference_results_user_completed",
    inference_results.c.requested_by,
    inference_results.c.completed_at.desc(),
    inference_results.c.result_id.desc(),
)
Index(
    "ix_inference_results_model_completed",
    inference_results.c.model_name,
    inference_results.c.completed_at.desc(),
)
Index("ix_inference_results_study", inference_results.c.study_instance_uid)
# The comparison of two versions of a model over a time window (both roles).
Index(
    "ix_inference_results_version_completed",
    inference_results.c.model_name,
    inference_results.c.model_version,
    inference_results.c.completed_at,
)
# Lookups by event id use uq_inference_results_natural_key (event_id leads it); a separate
# (event_id) index would only slow every insert down.

image_events = Table(
    "image_events",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error_code", String(64)),
    Column("stage", String(32)),
    Column("detail", String(500)),
    *_model_version(nullable=True),
    Column("at", _tz(), nullable=False),
    _inserted_at("recorded_at"),
    Column("requested_by", String(64)),
    Column("role", String(16), nullable=False, server_default=ResultRole.PUBLISHED.value),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{state.value}'" for state in LifecycleState) + ")",
        name="state_known",
    ),
    CheckConstraint(ROLE_KNOWN, name="role_known"),
)

# The failures of two versions of a model over a time window (the comparison's other half).
Index(
    "ix_image_events_version_failed",
    image_events.c.model_name,
    image_events.c.model_version,
    image_events.c.at,
    postgresql_where=image_events.c.state == LifecycleState.FAILED.value,
)

# One row per (event, state, model): redelivery never duplicates. NULL model parts are folded
# to '' because NULLs are distinct in a plain unique index.
Index(
    "uq_image_events_event_state_model",
    image_events.c.event_id,
    image_events.c.state,
    func.coalesce(image_events.c.model_name, literal("")),
    func.coalesce(image_events.c.model_version, literal("")),
    unique=True,
)

# The audit trail's copy of the audit.log topic. Append-only: migration 0002 installs triggers
# that refuse UPDATE, DELETE and TRUNCATE (see docs/audit.md). ``record`` is the authoritative
# record as published; the other columns are copies for indexing. ``id`` is the insertion
# order, which verification walks (so a reordered table shows).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    # The chain's identity is (audit_topic, chain_partition): two topic prefixes may share a
    # database (migration 0008; rows from before it are the default prefix's).
    Column("audit_topic", String(249), nullable=False, server_default=LEGACY_AUDIT_TOPIC),
    Column("chain_partition", Integer, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("event_id", UUID(as_uuid=True)),
    Column("recorded_at", _tz(), nullable=False),
    Column("audit_offset", BigInteger, nullable=False),
    Column("record", JSONB, nullable=False),
    _inserted_at("stored_at"),
    UniqueConstraint(
        "audit_topic", "chain_partition", "sequence", name="uq_audit_log_chain_sequence"
    ),
)
Index("ix_audit_log_event_id", audit_log.c.event_id)

# ----------------------------------------------------------------------- studies (0006)
# The completeness state machine's state, one row per study (streams/studies/completeness.py).
# ``state`` is the whole StudyState as JSON; the other columns are copies the sweeps and the
# status query filter on. ``deadline``: when a quiet period next ends (NULL once complete);
# ``analysis_deadline``: when the study result is made even with images still unanswered.
study_states = Table(
    "study_states",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("state", JSONB, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("deadline", _tz()),
    Column("analysis_deadline", _tz()),
    _inserted_at("updated_at"),
)
Index("ix_study_states_deadline", study_states.c.deadline)
Index("ix_study_states_analysis_deadline", study_states.c.analysis_deadline)

# Every arrival of a study (several arrivals may carry one SOP instance: ``instance_key``).
study_instances = Table(
    "study_instances",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False),
    Column("instance_key", String(64), nullable=False),
    Column("sop_instance_uid", String(64)),
    Column("series_instance_uid", String(64)),
    Column("arrived_at", _tz(), nullable=False),
)
Index("ix_study_instances_study", study_instances.c.study_instance_uid)

# Terminal outcomes of a study's arrivals, as the studies stage consumed them: a model's result
# or a rejection ('' model parts: a rejection before any model ran).
study_outcomes = Table(
    "study_outcomes",
    metadata,
    Column("event_id", UUID(as_uuid=True), nullable=False),
    *_model_version(),
    Column("study_instance_uid", String(64), nullable=False),
    Column("outcome", JSONB, nullable=False),
    _inserted_at("recorded_at"),
    UniqueConstraint("event_id", "model_name", "model_version", name="pk_study_outcomes_natural"),
)
Index("ix_study_outcomes_study", study_outcomes.c.study_instance_uid)

study_results = Table(
    "study_results",
    metadata,
    Column("study_result_id", UUID(as_uuid=True), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False),
    Column("generation", Integer, nullable=False),
    *_model_version(),
    Column("weights_sha256", String(64), nullable=False),
    Column("finding", String(64), nullable=False),
    Column("max_score", Double, nullable=False),
    Column("instance_count", Integer, nullable=False),
    Column("analysed_count", Integer, nullable=False),
    Column("positive_count", Integer, nullable=False),
    Column("failed_count", Integer, nullable=False),
    Column("result", JSONB, nullable=False),
    Column("aggregated_at", _tz(), nullable=False),
    _inserted_at("stored_at"),
    UniqueConstraint(
        "study_instance_uid",
        "generation",
        "model_name",
        "model_version",
        name="uq_study_results_natural_key",
    ),
)
Index(
    "ix_study_results_model_aggregated",
    study_results.c.model_name,
    study_results.c.aggregated_at.desc(),
)

# Urgent findings: at most one per study, model and finding (the unique key keeps the promise
# across restarts), and who acknowledged it when.
urgent_findings = Table(
    "urgent_findings",
    metadata,
    Column("alert_id", UUID(as_uuid=True), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False),
    *_model_version(),
    Column("finding", String(64), nullable=False),
    Column("score", Double, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("level", String(8), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("raised_at", _tz(), nullable=False),
    Column("acknowledged_by", String(64)),
    Column("acknowledged_at", _tz()),
    UniqueConstraint(
        "study_instance_uid", "model_name", "finding", name="uq_urgent_findings_study_finding"
    ),
    CheckConstraint(
        "(acknowledged_by IS NULL) = (acknowledged_at IS NULL)", name="acknowledgement_complete"
    ),
)
Index(
    "ix_urgent_findings_unacknowledged",
    urgent_findings.c.raised_at,
    postgresql_where=urgent_findings.c.acknowledged_at.is_(None),
)

# The studies stage's outbox: events decided in the same transaction as the state that caused
# them, published and deleted afterwards (nothing decided is lost between the two).
study_outbox = Table(
    "study_outbox",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("topic", String(64), nullable=False),
    Column("message_key", String(64), nullable=False),
    Column("value", Text, nullable=False),
    Column("priority", String(16), nullable=False),
    _inserted_at("created_at"),
)


# Messages on the audit topic the audit agent did not write (no valid writer signature,
# unreadable, or forking the chain): kept as evidence, never part of the trail. Append-only
# (migration 0005).
def _audit_topic_position() -> list[Column[object]]:
    """Where a message sat on the audit topic (with an insertion-order id)."""
    return [
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("audit_topic", String(249), nullable=False),
        Column("audit_partition", Integer, nullable=False),
        Column("audit_offset", BigInteger, nullable=False),
    ]


audit_quarantine = Table(
    "audit_quarantine",
    metadata,
    *_audit_topic_position(),
    Column("reason", String(64), nullable=False),
    Column("claimed_sequence", BigInteger),
    Column("payload", LargeBinary, nullable=False),
    _inserted_at("quarantined_at"),
    UniqueConstraint(
        "audit_topic", "audit_partition", "audit_offset", name="uq_audit_quarantine_position"
    ),
)

# The signed checkpoints published on the audit topic: the table's own trust anchors, so that
# deleting the checkpoint file alone is detected. Append-only (migration 0005).
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    *_audit_topic_position(),
    Column("chain_partition", Integer, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("checkpoint", JSONB, nullable=False),
    _inserted_at("stored_at"),
    UniqueConstraint(
        "audit_topic", "audit_partition", "audit_offset", name="uq_audit_checkpoints_position"
    ),
)
