"""Vendor-cloud connections, the devices they feed, sync runs and their cursors.

A *connection* is one vendor account's grant in a workspace (its OAuth tokens sealed at
rest, see ``integrations.crypto``). A device fed by a vendor cloud has a *device sync*
row: its connection, the vendor's id for it, its sync settings and the scheduler's
fields. Every sync is a *run* (the sync history); a *cursor* per device and data type
says up to where the vendor's data is committed, so incremental syncs resume there.
Segments keep, per run and metric, the readings' provenance, time-zone offset and
quality; vendor records map the vendor's own ids to what was stored, for deletions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, IdMixin, JSONType


class Connection(IdMixin, Base):
    __tablename__ = "integration_connections"
    __table_args__ = (
        UniqueConstraint("workspace_id", "connector", "external_user_id"),
        Index(None, "workspace_id", "connector", "status"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connector: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200))
    #: pending (consent not given yet) | active | auth_required | revoked | sunset
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text)
    #: The vendor's id of the account (None until the OAuth callback or a registration).
    external_user_id: Mapped[str | None] = mapped_column(String(200))
    #: Sealed JSON of the tokens (access, refresh, expiry, scope); never returned.
    credentials: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None]
    #: Bumped by every token refresh: a refresh that finds another number lost the race
    #: and uses the tokens the winner stored.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    #: A refresh in progress (any process): who holds it and until when.
    refreshing_by: Mapped[str | None] = mapped_column(String(100))
    refreshing_until: Mapped[datetime | None]
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: Data types (metric names) the account holder consented to share.
    consent: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: The vendor's webhook subscription, if any: id, expires_at, verification data.
    subscription: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeviceSync(Base):
    """A device fed by a vendor cloud: its settings and the scheduler's state."""

    __tablename__ = "integration_device_syncs"
    __table_args__ = (
        UniqueConstraint("connection_id", "vendor_device_id"),
        Index(None, "auto_sync", "next_sync_at"),
        Index(None, "workspace_id", "sync_status"),
    )

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_connections.id", ondelete="SET NULL")
    )
    connector: Mapped[str] = mapped_column(String(40))
    vendor_device_id: Mapped[str | None] = mapped_column(String(200))
    auto_sync: Mapped[bool] = mapped_column(Boolean, default=True)
    interval_minutes: Mapped[int] = mapped_column(Integer, default=15)
    historical_days: Mapped[int] = mapped_column(Integer, default=30)
    #: pending | syncing | ok | error | auth_required | paused
    sync_status: Mapped[str] = mapped_column(String(16), default="pending")
    last_sync_at: Mapped[datetime | None]
    next_sync_at: Mapped[datetime | None]
    last_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    #: Failed runs in a row (reset by a success); retries stop at the configured maximum.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncRun(IdMixin, Base):
    """One synchronisation of one device: the sync history."""

    __tablename__ = "integration_sync_runs"
    __table_args__ = (
        Index(None, "workspace_id", "created_at"),
        Index(None, "device_id", "created_at"),
        Index(None, "status", "not_before"),
        Index(None, "bulk_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_connections.id", ondelete="SET NULL")
    )
    #: manual | automatic | bulk | webhook | backfill
    sync_type: Mapped[str] = mapped_column(String(12))
    #: queued | running | completed | partial | failed | retry_wait | auth_required | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: The run this one retries (a chain of attempts), and the bulk request it belongs to.
    retry_of: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    bulk_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    requested_by: Mapped[str] = mapped_column(String(200))
    data_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: Not to be started before (a retry's backoff, a vendor's Retry-After).
    not_before: Mapped[datetime | None]
    #: Fetch from no later than this (a vendor's notification named the window).
    since: Mapped[datetime | None]
    #: The process running it and how long its claim lasts (renewed while it runs).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    records_processed: Mapped[int] = mapped_column(Integer, default=0)
    records_synced: Mapped[int] = mapped_column(Integer, default=0)
    records_failed: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncCursor(Base):
    """Up to where a device's data of one type is committed."""

    __tablename__ = "integration_sync_cursors"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    data_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: The newest measurement time committed (the next sync starts an overlap before it).
    synced_until: Mapped[datetime | None]
    #: A vendor's own cursor where it has one (a change token).
    token: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthState(Base):
    """An authorization request in flight: its state (as a digest) and PKCE verifier."""

    __tablename__ = "integration_oauth_states"
    __table_args__ = (Index(None, "expires_at"),)

    state_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connector: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    #: Who started it, as audit rows name a caller (``user:…``, ``api_key:…``).
    actor: Mapped[str | None] = mapped_column(String(300))
    #: The connection being (re)authorised.
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_connections.id", ondelete="CASCADE")
    )
    code_verifier: Mapped[str] = mapped_column(Text)  # sealed
    redirect_uri: Mapped[str] = mapped_column(Text)
    return_to: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(IdMixin, Base):
    """Readings of one metric stored by one run: provenance, time zone, quality."""

    __tablename__ = "integration_segments"
    __table_args__ = (
        Index(None, "device_id", "metric", "ts_from"),
        Index(None, "workspace_id", "created_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_sync_runs.id", ondelete="SET NULL")
    )
    connector: Mapped[str] = mapped_column(String(40))
    metric: Mapped[str] = mapped_column(String(100))
    ts_from: Mapped[datetime]
    ts_to: Mapped[datetime]
    #: The measurement's offset from UTC where the vendor gives it (minutes).
    tz_offset_min: Mapped[int | None] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    #: Quality from 0 to 1, and its parts: completeness, plausibility, duplicates, gaps.
    quality: Mapped[float] = mapped_column(Float)
    quality_parts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: Readings flagged as anomalies (robust z-score): their times.
    anomalies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: The app or device that measured, where the data says (an export's sourceName).
    source: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VendorRecord(Base):
    """A vendor's record (a sleep session, a weigh-in) and what it became here."""

    __tablename__ = "integration_vendor_records"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integration_connections.id", ondelete="CASCADE"), primary_key=True
    )
    data_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    ts: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class HealthAccess(IdMixin, Base):
    """A read of a device's health data (who, what, when): the access log."""

    __tablename__ = "integration_health_access"
    __table_args__ = (Index(None, "workspace_id", "at"), Index(None, "device_id", "at"))

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200))
    #: read | export | delete | purge
    action: Mapped[str] = mapped_column(String(12))
    what: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(IdMixin, Base):
    """A subscription to a vendor's notifications: Oura's are the app's (one per event
    and data type, ``scope`` "app"), Withings' one per connection and ``appli``
    (``scope`` the connection's id). Kept by ``integrations.webhooks.keeper``."""

    __tablename__ = "integration_webhook_subscriptions"
    __table_args__ = (
        UniqueConstraint("connector", "scope", "topic"),
        Index(None, "status", "expires_at"),
    )

    connector: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("integration_connections.id", ondelete="CASCADE")
    )
    #: Oura ``<event_type>:<data_type>``, Withings ``appli:<n>``.
    topic: Mapped[str] = mapped_column(String(80))
    #: pending | active | failed | revoked
    status: Mapped[str] = mapped_column(String(16), default="pending")
    callback_url: Mapped[str | None] = mapped_column(Text)
    vendor_id: Mapped[str | None] = mapped_column(String(200))
    #: SHA-256 of the verification token the vendor echoes back (Oura); never the token.
    token_digest: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]
    #: The process working on it and until when (several processes keep subscriptions).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    #: Not to be worked on before (a failed attempt's backoff).
    not_before: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
