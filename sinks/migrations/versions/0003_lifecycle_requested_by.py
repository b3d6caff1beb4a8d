"""Record who submitted each image on its lifecycle rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

The API answers ``GET /events/{event_id}`` only to the submitter (or an auditor/admin); an image
rejected before inference has no result row to say who submitted it, so the lifecycle keeps the
pseudonymous ``requested_by`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("image_events", sa.Column("requested_by", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("image_events", "requested_by")
