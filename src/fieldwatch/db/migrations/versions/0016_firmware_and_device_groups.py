"""firmware and device groups

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from fieldwatch.db.base import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_groups",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column(
            "filter",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_device_groups_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_groups")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_device_groups_workspace_id_name")
        ),
    )
    op.create_table(
        "firmware_policies",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("require_signed", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_firmware_policies_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_firmware_policies")),
    )
    op.create_table(
        "firmware_signing_keys",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_firmware_signing_keys_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_signing_keys")),
        sa.UniqueConstraint(
            "workspace_id",
            "fingerprint",
            name=op.f("uq_firmware_signing_keys_workspace_id_fingerprint"),
        ),
    )
    op.create_table(
        "device_group_members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_group_members_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.id"],
            name=op.f("fk_device_group_members_group_id_device_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "device_id", name=op.f("pk_device_group_members")),
    )
    with op.batch_alter_table("device_group_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_group_members_device_id"), ["device_id"], unique=False
        )

    op.create_table(
        "firmware_artifacts",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column(
            "device_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "hardware_versions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("min_from_version", sa.String(length=50), nullable=True),
        sa.Column("security_version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("signing_key_id", sa.Uuid(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["signing_key_id"],
            ["firmware_signing_keys.id"],
            name=op.f("fk_firmware_artifacts_signing_key_id_firmware_signing_keys"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_firmware_artifacts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_artifacts")),
        sa.UniqueConstraint(
            "workspace_id", "version", name=op.f("uq_firmware_artifacts_workspace_id_version")
        ),
    )
    with op.batch_alter_table("firmware_artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_artifacts_sha256"), ["sha256"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_firmware_artifacts_workspace_id_created_at"),
            ["workspace_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "firmware_rollouts",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column(
            "target",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("canary", sa.Integer(), nullable=False),
        sa.Column(
            "percentages",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("soak_s", sa.Integer(), nullable=False),
        sa.Column("failure_threshold", sa.Float(), nullable=False),
        sa.Column("min_finished", sa.Integer(), nullable=False),
        sa.Column("on_failure", sa.String(length=8), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        sa.Column("jitter_s", sa.Integer(), nullable=False),
        sa.Column("max_tries", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=True),
        sa.Column("window_end", UTCDateTime(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["firmware_artifacts.id"],
            name=op.f("fk_firmware_rollouts_artifact_id_firmware_artifacts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_firmware_rollouts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_rollouts")),
    )
    with op.batch_alter_table("firmware_rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_rollouts_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_firmware_rollouts_workspace_id_created_at"),
            ["workspace_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "firmware_rollout_devices",
        sa.Column("rollout_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("command_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["command_id"],
            ["commands.id"],
            name=op.f("fk_firmware_rollout_devices_command_id_commands"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_firmware_rollout_devices_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["firmware_rollouts.id"],
            name=op.f("fk_firmware_rollout_devices_rollout_id_firmware_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_rollout_devices")),
        sa.UniqueConstraint(
            "rollout_id", "device_id", name=op.f("uq_firmware_rollout_devices_rollout_id_device_id")
        ),
    )
    with op.batch_alter_table("firmware_rollout_devices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_rollout_devices_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_firmware_rollout_devices_rollout_id_wave_released_at"),
            ["rollout_id", "wave", "released_at"],
            unique=False,
        )

    op.create_table(
        "firmware_rollout_waves",
        sa.Column("rollout_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("soak_until", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["firmware_rollouts.id"],
            name=op.f("fk_firmware_rollout_waves_rollout_id_firmware_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_rollout_waves")),
        sa.UniqueConstraint(
            "rollout_id", "number", name=op.f("uq_firmware_rollout_waves_rollout_id_number")
        ),
    )
    op.create_table(
        "firmware_updates",
        sa.Column("command_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column("rollout_id", sa.Uuid(), nullable=True),
        sa.Column("wave", sa.Integer(), nullable=True),
        sa.Column("from_version", sa.String(length=50), nullable=True),
        sa.Column("target_version", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("state_deadline", UTCDateTime(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("max_tries", sa.Integer(), nullable=False),
        sa.Column("downloaded_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["firmware_artifacts.id"],
            name=op.f("fk_firmware_updates_artifact_id_firmware_artifacts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["command_id"],
            ["commands.id"],
            name=op.f("fk_firmware_updates_command_id_commands"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_firmware_updates_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["firmware_rollouts.id"],
            name=op.f("fk_firmware_updates_rollout_id_firmware_rollouts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_firmware_updates_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_firmware_updates")),
    )
    with op.batch_alter_table("firmware_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_updates_artifact_id"), ["artifact_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_firmware_updates_device_id_created_at"),
            ["device_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_firmware_updates_rollout_id_wave_state"),
            ["rollout_id", "wave", "state"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_firmware_updates_state_state_deadline"),
            ["state", "state_deadline"],
            unique=False,
        )

    # Not through batch mode: on SQLite that would copy the table and lose the search
    # triggers of 0014; both databases add a column with a default in place.
    op.add_column(
        "devices",
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            server_default=sa.text("'[]'"),
        ),
    )


def downgrade() -> None:
    # Not through batch mode: on SQLite that would copy the table and lose the search
    # triggers of 0014; both databases drop a column in place.
    op.execute("ALTER TABLE devices DROP COLUMN tags")

    with op.batch_alter_table("firmware_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_updates_state_state_deadline"))
        batch_op.drop_index(batch_op.f("ix_firmware_updates_rollout_id_wave_state"))
        batch_op.drop_index(batch_op.f("ix_firmware_updates_device_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_firmware_updates_artifact_id"))

    op.drop_table("firmware_updates")
    op.drop_table("firmware_rollout_waves")
    with op.batch_alter_table("firmware_rollout_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_rollout_devices_rollout_id_wave_released_at"))
        batch_op.drop_index(batch_op.f("ix_firmware_rollout_devices_device_id"))

    op.drop_table("firmware_rollout_devices")
    with op.batch_alter_table("firmware_rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_rollouts_workspace_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_firmware_rollouts_status"))

    op.drop_table("firmware_rollouts")
    with op.batch_alter_table("firmware_artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_artifacts_workspace_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_firmware_artifacts_sha256"))

    op.drop_table("firmware_artifacts")
    with op.batch_alter_table("device_group_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_group_members_device_id"))

    op.drop_table("device_group_members")
    op.drop_table("firmware_signing_keys")
    op.drop_table("firmware_policies")
    op.drop_table("device_groups")
