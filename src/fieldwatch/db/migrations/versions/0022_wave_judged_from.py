"""rollout waves: when the failure share is counted from

A wave stopped for failures and resumed is judged on the devices released from the
resume on (``judged_from``); its ``started_at`` stays when it started.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fieldwatch.db.base import UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("firmware_rollout_waves", sa.Column("judged_from", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("firmware_rollout_waves", "judged_from")
