"""Inference results and image lifecycle events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written by hand (not from the current metadata) so this revision never changes when
``sinks/tables.py`` does; ``test_database_migrations.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inference_results",
        sa.Column("result_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("verdicts", postgresql.JSONB(), nullable=False),
        sa.Column("thresholds", postgresql.JSONB(), nullable=False),
        sa.Column("scores", postgresql.JSONB(), nullable=False),
        sa.Column("decision", sa.String(64), nullable=False),
        sa.Column("inference_seconds", sa.Double(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(64)),
        sa.Column("study_instance_uid", sa.String(64)),
        sa.Column("series_instance_uid", sa.String(64)),
        sa.Column("sop_instance_uid", sa.String(64)),
        sa.Column("modality", sa.String(16)),
        sa.Column("source", sa.String(64)),
        sa.Column("occurred_at", _tz(), nullable=False),
        sa.Column("completed_at", _tz(), nullable=False),
        sa.Column("stored_at", _tz(), nullable=False, server_default=sa.func.now()),
        sa.Column("verified_by", sa.String(64)),
        sa.Column("verified_at", _tz()),
        sa.Column("verification_note", sa.Text()),
        sa.PrimaryKeyConstraint("result_id", name="pk_inference_results"),
        sa.UniqueConstraint(
            "event_id", "model_name", "model_version", name="uq_inference_results_natural_key"
        ),
        sa.CheckConstraint(
            "(verified_by IS NULL) = (verified_at IS NULL)",
            name="ck_inference_results_verification_complete",
        ),
        sa.CheckConstraint(
            "char_length(verification_note) <= 2000",
            name="ck_inference_results_verification_note_length",
        ),
    )
    op.create_index(
        "ix_inference_results_user_completed",
        "inference_results",
        ["requested_by", sa.text("completed_at DESC"), sa.text("result_id DESC")],
    )
    op.create_index(
        "ix_inference_results_model_completed",
        "inference_results",
        ["model_name", sa.text("completed_at DESC")],
    )
    op.create_index("ix_inference_results_study", "inference_results", ["study_instance_uid"])

    op.create_table(
        "image_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("stage", sa.String(32)),
        sa.Column("detail", sa.String(500)),
        sa.Column("model_name", sa.String(64)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("at", _tz(), nullable=False),
        sa.Column("recorded_at", _tz(), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_image_events"),
        sa.CheckConstraint(
            "state IN ('arrived', 'validated', 'rejected', 'inferred', 'failed', 'stored')",
            name="ck_image_events_state_known",
        ),
    )
    op.create_index(
        "uq_image_events_event_state_model",
        "image_events",
        [
            "event_id",
            "state",
            sa.text("coalesce(model_name, '')"),
            sa.text("coalesce(model_version, '')"),
        ],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("image_events")
    op.drop_table("inference_results")
