"""The audit chain's identity includes its audit topic (issue 17 E).

Revision ID: 0008_audit_chain_identity
Revises: 0007_result_roles
Create Date: 2026-11-30

A chain was identified by its partition alone, so a deployment on a second topic prefix
sharing the database collided with chain 0 of the first: its records were taken for forks of
the other chain. ``audit_log`` gains ``audit_topic`` and the unique key becomes
``(audit_topic, chain_partition, sequence)``. Which topic the existing rows were copied from is
a setting, not something SQL can know: they get the server default ``radstream.audit.log``,
the audit topic of the default prefix (``schemas.audit.LEGACY_AUDIT_TOPIC``). A deployment that
ran the table writer on another prefix before this migration updates those rows itself, with
the append-only triggers disabled by the owner (docs/audit.md). ``audit_checkpoints`` already
names its topic.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_chain_identity"
down_revision: str | None = "0007_result_roles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_AUDIT_TOPIC = "radstream.audit.log"  # frozen here: a migration never follows settings
_KEY = "uq_audit_log_chain_sequence"


def upgrade() -> None:
    op.add_column(
        "audit_log",
        sa.Column("audit_topic", sa.String(249), nullable=False, server_default=LEGACY_AUDIT_TOPIC),
    )
    op.drop_constraint(_KEY, "audit_log", type_="unique")
    op.create_unique_constraint(_KEY, "audit_log", ["audit_topic", "chain_partition", "sequence"])


def downgrade() -> None:
    op.drop_constraint(_KEY, "audit_log", type_="unique")
    op.create_unique_constraint(_KEY, "audit_log", ["chain_partition", "sequence"])
    op.drop_column("audit_log", "audit_topic")
