"""Audit trust: quarantined foreign records and the checkpoint table.

Revision ID: 0005
Revises: 0004_roles_and_privileges
Create Date: 2026-11-30

* ``audit_quarantine`` keeps every message on the audit topic the audit agent did not write (no
  valid writer signature, unreadable, or forking the chain) with its topic position and the
  reason: kept as evidence, never part of the trail.
* ``audit_checkpoints`` keeps the signed checkpoints published on the audit topic, so the table
  has its own trust anchors and deleting the checkpoint file alone is detected.

Both are append-only like ``audit_log`` (the refusing function now names the table).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004_roles_and_privileges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

APPEND_ONLY_TABLES = ("audit_quarantine", "audit_checkpoints")


def _append_only(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
    )
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC")


def _position_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("audit_topic", sa.String(249), nullable=False),
        sa.Column("audit_partition", sa.Integer(), nullable=False),
        sa.Column("audit_offset", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.execute(REFUSE_FUNCTION)
    op.create_table(
        "audit_quarantine",
        *_position_columns(),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("claimed_sequence", sa.BigInteger()),
        sa.Column("payload", postgresql.BYTEA(), nullable=False),
        sa.Column(
            "quarantined_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_quarantine"),
        sa.UniqueConstraint(
            "audit_topic", "audit_partition", "audit_offset", name="uq_audit_quarantine_position"
        ),
    )
    op.create_table(
        "audit_checkpoints",
        *_position_columns(),
        sa.Column("chain_partition", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint", postgresql.JSONB(), nullable=False),
        sa.Column(
            "stored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
        sa.UniqueConstraint(
            "audit_topic", "audit_partition", "audit_offset", name="uq_audit_checkpoints_position"
        ),
    )
    for table in APPEND_ONLY_TABLES:
        _append_only(table)


def downgrade() -> None:
    for table in APPEND_ONLY_TABLES:
        op.drop_table(table)
