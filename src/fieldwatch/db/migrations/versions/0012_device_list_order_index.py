"""the device list reads its pages in index order

The list is ordered by (created_at, id) within a workspace. An index on (workspace_id,
created_at, id) gives that order without sorting the workspace's devices, so a page —
also one filtered by connectivity, whose semi-join then probes the presence index per
device — stops after the rows it needs. It replaces the index on (workspace_id,
created_at), which it covers.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_devices_workspace_id_created_at_id",
        "devices",
        ["workspace_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_devices_workspace_id_created_at", table_name="devices")


def downgrade() -> None:
    op.create_index(
        "ix_devices_workspace_id_created_at",
        "devices",
        ["workspace_id", "created_at"],
        unique=False,
    )
    op.drop_index("ix_devices_workspace_id_created_at_id", table_name="devices")
