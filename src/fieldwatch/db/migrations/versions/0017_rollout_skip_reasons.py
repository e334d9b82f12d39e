"""rollout devices keep why they were skipped

A rollout's device that is no longer eligible when its wave releases it gets no update;
``skip_reason`` (a compatibility reason, ``unsigned``, ``open_update``, ``refused``) and
``skip_detail`` keep why, for ``GET /api/v1/firmware/rollouts/{id}/devices``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not through batch mode (on SQLite it copies the table): both databases add a
    # nullable column in place.
    op.add_column(
        "firmware_rollout_devices", sa.Column("skip_reason", sa.String(length=30), nullable=True)
    )
    op.add_column("firmware_rollout_devices", sa.Column("skip_detail", sa.Text(), nullable=True))


def downgrade() -> None:
    # In place on both databases (SQLite >= 3.35 drops a plain column itself).
    op.execute("ALTER TABLE firmware_rollout_devices DROP COLUMN skip_detail")
    op.execute("ALTER TABLE firmware_rollout_devices DROP COLUMN skip_reason")
