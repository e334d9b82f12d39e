"""telemetry and presence

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fieldwatch.db.base import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _create_readings()
    op.create_table(
        "rollup_1h",
        sa.Column(
            "series_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "bucket", name=op.f("pk_rollup_1h")),
    )
    op.create_table(
        "rollup_1m",
        sa.Column(
            "series_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "bucket", name=op.f("pk_rollup_1m")),
    )
    op.create_table(
        "device_type_settings",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("heartbeat_interval_s", sa.Integer(), nullable=False),
        sa.Column("offline_tolerance", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_device_type_settings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "type", name=op.f("pk_device_type_settings")),
    )
    op.create_table(
        "workspace_telemetry_settings",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_telemetry_settings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_workspace_telemetry_settings")),
    )
    op.create_table(
        "connectivity_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("connectivity", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_connectivity_events_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connectivity_events")),
    )
    with op.batch_alter_table("connectivity_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connectivity_events_device_id_id"), ["device_id", "id"], unique=False
        )

    op.create_table(
        "device_presence",
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("connectivity", sa.String(length=8), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=True),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_interval_s", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_presence_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_device_presence_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_presence")),
    )
    with op.batch_alter_table("device_presence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_presence_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_ts", UTCDateTime(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_text", sa.Text(), nullable=True),
        sa.Column("last_quality", sa.SmallInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_series_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_series_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("device_id", "metric", name=op.f("uq_series_device_id_metric")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_series_workspace_id"), ["workspace_id"], unique=False)


def _create_readings() -> None:
    """On PostgreSQL the readings table is range-partitioned by week on ``ts``;
    partitions are created ahead (and on demand) by the application."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE TABLE readings (
                series_id BIGINT NOT NULL,
                ts TIMESTAMP WITH TIME ZONE NOT NULL,
                value DOUBLE PRECISION,
                text_value TEXT,
                quality SMALLINT,
                CONSTRAINT pk_readings PRIMARY KEY (series_id, ts)
            ) PARTITION BY RANGE (ts)
            """
        )
        return
    op.create_table(
        "readings",
        sa.Column(
            "series_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("text_value", sa.Text(), nullable=True),
        sa.Column("quality", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("series_id", "ts", name=op.f("pk_readings")),
    )


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_workspace_id"))

    op.drop_table("series")
    with op.batch_alter_table("device_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_presence_workspace_id"))

    op.drop_table("device_presence")
    with op.batch_alter_table("connectivity_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connectivity_events_device_id_id"))

    op.drop_table("connectivity_events")
    op.drop_table("workspace_telemetry_settings")
    op.drop_table("device_type_settings")
    op.drop_table("rollup_1m")
    op.drop_table("rollup_1h")
    op.drop_table("readings")
