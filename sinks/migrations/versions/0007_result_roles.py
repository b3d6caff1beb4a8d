"""Keep the outcomes of model versions in shadow beside the published ones, marked by role.

Revision ID: 0007_result_roles
Revises: 0006_studies
Create Date: 2026-11-30

A version in shadow (or the active version beside a canary) runs on live traffic so it can be
compared with the published one (docs/models.md). Its results and failures are stored in the
same tables with ``role = 'shadow'``; every existing row, and everything the pipeline publishes,
is ``'published'``. The API's default views and the lifecycle read only published rows; the
comparison reads both, by model version and time, through the two indexes created here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_result_roles"
down_revision: str | None = "0006_studies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLE_KNOWN = "role IN ('published', 'shadow')"


def upgrade() -> None:
    for table in ("inference_results", "image_events"):
        op.add_column(
            table,
            sa.Column("role", sa.String(16), nullable=False, server_default="published"),
        )
        op.create_check_constraint(f"ck_{table}_role_known", table, _ROLE_KNOWN)
    op.create_index(
        "ix_inference_results_version_completed",
        "inference_results",
        ["model_name", "model_version", "completed_at"],
    )
    op.create_index(
        "ix_image_events_version_failed",
        "image_events",
        ["model_name", "model_version", "at"],
        postgresql_where=sa.text("state = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_image_events_version_failed", table_name="image_events")
    op.drop_index("ix_inference_results_version_completed", table_name="inference_results")
    for table in ("inference_results", "image_events"):
        op.drop_constraint(f"ck_{table}_role_known", table, type_="check")
        op.drop_column(table, "role")
