"""the device list filters by connectivity

``GET /devices?connectivity=online|offline`` keeps the devices whose presence row says
online (or not): a semi-join (anti-join) of ``devices`` with ``device_presence`` on
the workspace and the device. An index on (workspace_id, connectivity, device_id) finds
a workspace's online devices without reading the table; it replaces the index on
workspace_id alone, which it covers.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_presence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_presence_workspace_id_connectivity_device_id"),
            ["workspace_id", "connectivity", "device_id"],
            unique=False,
        )
        batch_op.drop_index(batch_op.f("ix_device_presence_workspace_id"))


def downgrade() -> None:
    with op.batch_alter_table("device_presence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_presence_workspace_id"), ["workspace_id"], unique=False
        )
        batch_op.drop_index(batch_op.f("ix_device_presence_workspace_id_connectivity_device_id"))
