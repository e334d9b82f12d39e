"""Firmware artifacts, signing keys, per-device updates and rollouts.

An artifact's bytes live in the blob store (content-addressed by SHA-256); the row holds
its manifest. A per-device update is a ``firmware_update`` command in the ledger; its
row here (keyed by the command's id) holds the sub-state the device reports, the state's
deadline and the retry budget. A rollout releases updates in waves.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, IdMixin, JSONType


class FirmwareArtifact(IdMixin, Base):
    __tablename__ = "firmware_artifacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "version"),
        Index(None, "workspace_id", "created_at"),
        Index(None, "sha256"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(50))
    #: Device types it is built for (a device's ``type``); at least one.
    device_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: Hardware versions it runs on; empty: any.
    hardware_versions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: The oldest version a device may update from (None: any).
    min_from_version: Mapped[str | None] = mapped_column(String(50))
    #: Anti-rollback: a device never goes to a lower security version than it runs.
    security_version: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    #: Base64 Ed25519 signature over the canonical manifest, verified on upload.
    signature: Mapped[str | None] = mapped_column(Text)
    signing_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("firmware_signing_keys.id", ondelete="RESTRICT")
    )
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SigningKey(IdMixin, Base):
    """A workspace's Ed25519 public key that artifacts may be signed with."""

    __tablename__ = "firmware_signing_keys"
    __table_args__ = (UniqueConstraint("workspace_id", "fingerprint"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    #: The raw 32-byte public key, base64.
    public_key: Mapped[str] = mapped_column(String(64))
    #: SHA-256 (hex) of the raw key.
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class FirmwarePolicy(Base):
    """A workspace's firmware settings (no row: the defaults)."""

    __tablename__ = "firmware_policies"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    require_signed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FirmwareUpdate(Base):
    """One device's update: the sub-state of its ``firmware_update`` command."""

    __tablename__ = "firmware_updates"
    __table_args__ = (
        Index(None, "device_id", "created_at"),
        Index(None, "state", "state_deadline"),
        Index(None, "rollout_id", "wave", "state"),
        Index(None, "artifact_id"),
    )

    command_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    artifact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("firmware_artifacts.id", ondelete="RESTRICT")
    )
    rollout_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("firmware_rollouts.id", ondelete="SET NULL")
    )
    wave: Mapped[int | None] = mapped_column(Integer)
    from_version: Mapped[str | None] = mapped_column(String(50))
    target_version: Mapped[str] = mapped_column(String(50))
    #: pending, sent, acknowledged, downloading, downloaded, verified, installing,
    #: rebooting, completed, failed, cancelled, expired.
    state: Mapped[str] = mapped_column(String(12))
    #: Why it failed: download_failed, checksum_mismatch, signature_invalid,
    #: incompatible, install_failed, rolled_back, timeout.
    reason: Mapped[str | None] = mapped_column(String(30))
    detail: Mapped[str | None] = mapped_column(Text)
    #: When the present state times out (None for final states).
    state_deadline: Mapped[datetime | None]
    #: Tries used, and the budget (a retry resends the update; the device resumes).
    tries: Mapped[int] = mapped_column(Integer, default=1)
    max_tries: Mapped[int] = mapped_column(Integer)
    #: Bytes the device last said it had (resume point).
    downloaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Rollout(IdMixin, Base):
    """An artifact released to a target in waves: draft → running ⇄ paused →
    completed | aborted."""

    __tablename__ = "firmware_rollouts"
    __table_args__ = (Index(None, "workspace_id", "created_at"), Index(None, "status"))

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    artifact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("firmware_artifacts.id", ondelete="RESTRICT")
    )
    #: {"group_id": …} | {"filter": {…}} | {"device_ids": […]}
    target: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="draft")
    canary: Mapped[int] = mapped_column(Integer)
    #: Cumulative percentages of the rest after the canary, e.g. [25, 100].
    percentages: Mapped[list[int]] = mapped_column(JSONType, default=list)
    soak_s: Mapped[int] = mapped_column(Integer)
    #: Share of a wave's finished updates that may fail (0..1) …
    failure_threshold: Mapped[float] = mapped_column(Float)
    #: … once this many of them have finished.
    min_finished: Mapped[int] = mapped_column(Integer)
    #: "pause" or "abort" when the threshold is passed.
    on_failure: Mapped[str] = mapped_column(String(8), default="pause")
    rate_per_minute: Mapped[int] = mapped_column(Integer)
    jitter_s: Mapped[int] = mapped_column(Integer, default=0)
    max_tries: Mapped[int] = mapped_column(Integer)
    #: Updates are released only within this window (offline devices included).
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class RolloutWave(IdMixin, Base):
    """pending → running → soaking → completed, or halted (the rollout stopped)."""

    __tablename__ = "firmware_rollout_waves"
    __table_args__ = (UniqueConstraint("rollout_id", "number"),)

    rollout_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("firmware_rollouts.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    started_at: Mapped[datetime | None]
    #: Resumed after a stop for failures: the failure share counts from here on.
    judged_from: Mapped[datetime | None]
    soak_until: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    @property
    def since(self) -> datetime | None:
        """Where the wave's failures are counted from."""
        return self.judged_from or self.started_at


class RolloutDevice(IdMixin, Base):
    """A device a rollout targets, its wave, and its update once released."""

    __tablename__ = "firmware_rollout_devices"
    __table_args__ = (
        UniqueConstraint("rollout_id", "device_id"),
        Index(None, "rollout_id", "wave", "released_at"),
        Index(None, "device_id"),
    )

    rollout_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("firmware_rollouts.id", ondelete="CASCADE")
    )
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    wave: Mapped[int] = mapped_column(Integer)
    #: When the update was released (None: still waiting for its wave or the rate cap).
    released_at: Mapped[datetime | None]
    command_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("commands.id", ondelete="SET NULL")
    )
    #: Why a released device got no update (it was no longer eligible when released):
    #: a compatibility reason (``compat``), ``unsigned``, ``open_update``, ``refused``.
    skip_reason: Mapped[str | None] = mapped_column(String(30))
    #: … in words.
    skip_detail: Mapped[str | None] = mapped_column(Text)
