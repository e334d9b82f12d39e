"""the device list sorted by name reads its pages in index order

The console's inventory sorts by name when its Name header is clicked: without an index
the whole workspace was read and sorted for every page (PostgreSQL, 100,000 devices:
~22 ms a page; SQLite ~55 ms). An index on (workspace_id, name, id) gives that order
(both directions) and the list's tiebreak.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_devices_workspace_id_name_id", "devices", ["workspace_id", "name", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_devices_workspace_id_name_id", table_name="devices")
