"""integration segments keep the app or device that measured

Readings of an uploaded health export (Apple Health's ``sourceName``, Health Connect's
app package) keep where they came from on their segment: ``source``.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column, added in place on both databases.
    op.add_column("integration_segments", sa.Column("source", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE integration_segments DROP COLUMN source")
