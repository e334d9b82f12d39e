"""agent tokens: made for MQTT or not

``FIELDWATCH_MQTT_DEVICE_LOGINS=on_request`` makes only tokens created for MQTT logins of
the broker. Every token from before was one, so existing rows say ``mqtt = true``.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "agent_tokens",
        sa.Column("mqtt", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    with op.batch_alter_table("agent_tokens") as batch:
        batch.drop_column("mqtt")
