"""vendor webhooks: subscriptions to vendors' notifications, a run's window start

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fieldwatch.db.base import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_webhook_subscriptions",
        sa.Column("connector", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=True),
        sa.Column("topic", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("vendor_id", sa.String(length=200), nullable=True),
        sa.Column("token_digest", sa.String(length=64), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["integration_connections.id"],
            name=op.f("fk_integration_webhook_subscriptions_connection_id_integration_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integration_webhook_subscriptions")),
        sa.UniqueConstraint(
            "connector",
            "scope",
            "topic",
            name=op.f("uq_integration_webhook_subscriptions_connector_scope_topic"),
        ),
    )
    op.create_index(
        op.f("ix_integration_webhook_subscriptions_status_expires_at"),
        "integration_webhook_subscriptions",
        ["status", "expires_at"],
    )
    with op.batch_alter_table("integration_sync_runs") as batch:
        batch.add_column(sa.Column("since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_sync_runs") as batch:
        batch.drop_column("since")
    op.drop_index(
        op.f("ix_integration_webhook_subscriptions_status_expires_at"),
        table_name="integration_webhook_subscriptions",
    )
    op.drop_table("integration_webhook_subscriptions")
