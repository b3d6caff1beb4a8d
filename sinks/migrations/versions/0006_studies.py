"""Studies: completeness state, study instances and outcomes, study results, urgent findings.

Revision ID: 0006_studies
Revises: 0005
Create Date: 2026-11-30

The studies stage (issue #15) keeps the completeness state machine's state in PostgreSQL (one
row per study, JSON state plus the columns the sweeps filter on), the study's arrivals and
their terminal outcomes, the study results per model and generation, the urgent findings with
their acknowledgement, and an outbox of the events it decided (docs/studies.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0006_studies"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "study_states",
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("deadline", _tz()),
        sa.Column("analysis_deadline", _tz()),
        sa.Column("updated_at", _tz(), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("study_instance_uid", name="pk_study_states"),
    )
    op.create_index("ix_study_states_deadline", "study_states", ["deadline"])
    op.create_index("ix_study_states_analysis_deadline", "study_states", ["analysis_deadline"])
    op.create_table(
        "study_instances",
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("instance_key", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64)),
        sa.Column("series_instance_uid", sa.String(64)),
        sa.Column("arrived_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_study_instances"),
    )
    op.create_index("ix_study_instances_study", "study_instances", ["study_instance_uid"])
    op.create_table(
        "study_outcomes",
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("outcome", JSONB, nullable=False),
        sa.Column("recorded_at", _tz(), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint(
            "event_id", "model_name", "model_version", name="pk_study_outcomes_natural"
        ),
    )
    op.create_index("ix_study_outcomes_study", "study_outcomes", ["study_instance_uid"])
    op.create_table(
        "study_results",
        sa.Column("study_result_id", UUID(as_uuid=True), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("finding", sa.String(64), nullable=False),
        sa.Column("max_score", sa.Double, nullable=False),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("analysed_count", sa.Integer, nullable=False),
        sa.Column("positive_count", sa.Integer, nullable=False),
        sa.Column("failed_count", sa.Integer, nullable=False),
        sa.Column("result", JSONB, nullable=False),
        sa.Column("aggregated_at", _tz(), nullable=False),
        sa.Column("stored_at", _tz(), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("study_result_id", name="pk_study_results"),
        sa.UniqueConstraint(
            "study_instance_uid",
            "generation",
            "model_name",
            "model_version",
            name="uq_study_results_natural_key",
        ),
    )
    op.create_index(
        "ix_study_results_model_aggregated",
        "study_results",
        ["model_name", sa.text("aggregated_at DESC")],
    )
    op.create_table(
        "urgent_findings",
        sa.Column("alert_id", UUID(as_uuid=True), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("finding", sa.String(64), nullable=False),
        sa.Column("score", sa.Double, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("raised_at", _tz(), nullable=False),
        sa.Column("acknowledged_by", sa.String(64)),
        sa.Column("acknowledged_at", _tz()),
        sa.PrimaryKeyConstraint("alert_id", name="pk_urgent_findings"),
        sa.UniqueConstraint(
            "study_instance_uid", "model_name", "finding", name="uq_urgent_findings_study_finding"
        ),
        sa.CheckConstraint(
            "(acknowledged_by IS NULL) = (acknowledged_at IS NULL)",
            name="ck_urgent_findings_acknowledgement_complete",
        ),
    )
    op.create_index(
        "ix_urgent_findings_unacknowledged",
        "urgent_findings",
        ["raised_at"],
        postgresql_where=sa.text("acknowledged_at IS NULL"),
    )
    op.create_table(
        "study_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("message_key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("created_at", _tz(), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_study_outbox"),
    )
    op.execute(GRANT_RUNTIME)


# The runtime role (0004_roles_and_privileges) gets SELECT and INSERT on new tables by default.
# The studies stage also locks and updates its state rows (SELECT ... FOR UPDATE needs UPDATE),
# upserts results, acknowledges findings and drains the outbox (DELETE): grant exactly that,
# where the role exists (a single-role development cluster has none).
GRANT_RUNTIME = """
DO $grants$
DECLARE
    runtime text := current_database() || '_runtime';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = runtime) THEN
        EXECUTE format('GRANT UPDATE ON study_states, study_instances, study_outcomes, '
            || 'study_results, urgent_findings, study_outbox TO %I', runtime);
        EXECUTE format('GRANT DELETE ON study_outbox TO %I', runtime);
    END IF;
END
$grants$
"""


def downgrade() -> None:
    for table in (
        "study_outbox",
        "urgent_findings",
        "study_results",
        "study_outcomes",
        "study_instances",
        "study_states",
    ):
        op.drop_table(table)
