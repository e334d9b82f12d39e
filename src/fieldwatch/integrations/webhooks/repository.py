"""All SQL of vendor notifications: subscriptions (claimed by one process at a time,
like sync runs: a conditional UPDATE that one process wins), the connections and device
syncs a notification concerns, and the vendor records it may delete."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.upsert import insert_for
from fieldwatch.devices.models import Device
from fieldwatch.integrations.models import (
    Connection,
    DeviceSync,
    HealthAccess,
    SyncRun,
    VendorRecord,
    WebhookSubscription,
)
from fieldwatch.integrations.sync.schemas import OPEN

APP_SCOPE = "app"


def _claimable(now: datetime) -> Any:
    return and_(
        WebhookSubscription.status != "revoked",
        or_(WebhookSubscription.claimed_until.is_(None), WebhookSubscription.claimed_until < now),
        or_(WebhookSubscription.not_before.is_(None), WebhookSubscription.not_before <= now),
    )


def _due(now: datetime, renew_by: datetime, callbacks: dict[str, str]) -> Any:
    """Claimable, of a connector with a callback, and not made yet (or failed), expiring
    before ``renew_by`` or made for another callback address than the connector's now."""
    moved = [and_(WebhookSubscription.connector == kind,
                  or_(WebhookSubscription.callback_url.is_(None),
                      WebhookSubscription.callback_url != url))
             for kind, url in callbacks.items()]  # fmt: skip
    return and_(
        _claimable(now),
        WebhookSubscription.connector.in_(list(callbacks)),
        or_(WebhookSubscription.status.in_(("pending", "failed")),
            WebhookSubscription.expires_at <= renew_by, *moved),
    )  # fmt: skip


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- subscriptions ----------------------------------------------------------------

    async def ensure(self, connector: str, scope: str, connection_id: uuid.UUID | None,
                     topics: Sequence[str]) -> None:  # fmt: skip
        """Rows (pending) for the subscriptions wanted, where there are none yet."""
        for topic in topics:
            stmt = insert_for(self.session, WebhookSubscription).values(
                id=uuid.uuid4(), connector=connector, scope=scope, connection_id=connection_id,
                topic=topic, status="pending", failures=0,
            )  # fmt: skip
            await self.session.execute(stmt.on_conflict_do_nothing(
                index_elements=["connector", "scope", "topic"]))  # fmt: skip

    async def due(self, now: datetime, renew_by: datetime, callbacks: dict[str, str],
                  limit: int) -> list[uuid.UUID]:  # fmt: skip
        """Subscriptions to work on: not yet made (or failed), expiring before
        ``renew_by``, or made for another callback address than the connector's now."""
        rows = await self.session.scalars(
            select(WebhookSubscription.id).where(_due(now, renew_by, callbacks))
            .order_by(WebhookSubscription.created_at).limit(limit)
        )  # fmt: skip
        return list(rows.all())

    async def claim(self, sub_id: uuid.UUID, owner: str, now: datetime, until: datetime,
                    renew_by: datetime, callbacks: dict[str, str],
                    **values: Any) -> WebhookSubscription | None:  # fmt: skip
        """Claim a subscription that is still due (another process may have renewed it
        since it was listed: then it is left alone)."""
        result = await self.session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == sub_id, _due(now, renew_by, callbacks))
            .values(claimed_by=owner, claimed_until=until, **values)
        )  # fmt: skip
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return await self.session.get(WebhookSubscription, sub_id, populate_existing=True)

    async def settle(self, sub_id: uuid.UUID, owner: str, **values: Any) -> bool:
        """Record the outcome and give the claim back (only by its holder)."""
        result = await self.session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == sub_id, WebhookSubscription.claimed_by == owner)
            .values(claimed_by=None, claimed_until=None, **values)
        )  # fmt: skip
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def knows_token(self, connector: str, digest: str) -> bool:
        found = await self.session.scalar(
            select(WebhookSubscription.id).where(
                WebhookSubscription.connector == connector,
                WebhookSubscription.token_digest == digest,
                WebhookSubscription.status != "revoked",
            ).limit(1)
        )  # fmt: skip
        return found is not None

    async def listing(
        self, workspace_id: uuid.UUID, *, connector: str | None, status: str | None, limit: int,
        offset: int,
    ) -> tuple[Sequence[WebhookSubscription], int]:  # fmt: skip
        """The subscriptions serving a workspace: its connections' and, once it has a
        connection of that vendor, the app's own; by connector, connection and topic."""
        ours = select(Connection.id).where(Connection.workspace_id == workspace_id)
        same_vendor = Connection.connector == WebhookSubscription.connector
        vendor_used = exists().where(Connection.workspace_id == workspace_id, same_vendor)
        where = [or_(WebhookSubscription.connection_id.in_(ours),
                     and_(WebhookSubscription.connection_id.is_(None), vendor_used))]  # fmt: skip
        if connector is not None:
            where.append(WebhookSubscription.connector == connector)
        if status is not None:
            where.append(WebhookSubscription.status == status)
        total = await self.session.scalar(select(func.count()).select_from(WebhookSubscription)
                                          .where(*where))  # fmt: skip
        rows = await self.session.scalars(
            select(WebhookSubscription).where(*where)
            .order_by(WebhookSubscription.connector, WebhookSubscription.connection_id,
                      WebhookSubscription.topic).limit(limit).offset(offset)
        )  # fmt: skip
        return rows.all(), int(total or 0)

    async def of_connection(self, connection_id: uuid.UUID) -> Sequence[WebhookSubscription]:
        rows = await self.session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.connection_id == connection_id,
                WebhookSubscription.status != "revoked",
            )
        )  # fmt: skip
        return rows.all()

    async def revoke_all(self, connection_id: uuid.UUID) -> None:
        await self.session.execute(
            update(WebhookSubscription).where(WebhookSubscription.connection_id == connection_id)
            .values(status="revoked", claimed_by=None, claimed_until=None)
        )  # fmt: skip

    # --- what a notification concerns ------------------------------------------------

    async def active_connections(self, connector: str) -> Sequence[Connection]:
        rows = await self.session.scalars(
            select(Connection).where(Connection.connector == connector,
                                     Connection.status == "active")
            .order_by(Connection.created_at)
        )  # fmt: skip
        return rows.all()

    async def accounts(self, connector: str, external_user_id: str) -> Sequence[Connection]:
        """The active connections to this vendor account, in every workspace."""
        rows = await self.session.scalars(
            select(Connection).where(Connection.connector == connector,
                                     Connection.external_user_id == external_user_id,
                                     Connection.status == "active")
        )  # fmt: skip
        return rows.all()

    async def syncs_of(self, connection_id: uuid.UUID) -> Sequence[DeviceSync]:
        """The connection's devices that sync automatically (not retired), locked until
        the transaction ends (PostgreSQL), so hints arriving together make one run."""
        rows = await self.session.scalars(
            select(DeviceSync).join(Device, Device.id == DeviceSync.device_id)
            .where(DeviceSync.connection_id == connection_id, DeviceSync.auto_sync.is_(True),
                   Device.status != "retired")
            .order_by(DeviceSync.device_id)
            .with_for_update(of=DeviceSync).execution_options(populate_existing=True)
        )  # fmt: skip
        return rows.all()

    async def open_run(self, device_id: uuid.UUID) -> SyncRun | None:
        return await self.session.scalar(
            select(SyncRun).where(SyncRun.device_id == device_id, SyncRun.status.in_(OPEN))
            .order_by(SyncRun.created_at).limit(1).execution_options(populate_existing=True)
        )  # fmt: skip

    async def records(self, connection_id: uuid.UUID, metrics: Sequence[str],
                      vendor_id: str) -> Sequence[VendorRecord]:  # fmt: skip
        rows = await self.session.scalars(
            select(VendorRecord).where(
                VendorRecord.connection_id == connection_id,
                VendorRecord.data_type.in_(list(metrics)),
                VendorRecord.vendor_id == vendor_id,
                VendorRecord.deleted_at.is_(None),
            )
        )  # fmt: skip
        return rows.all()

    async def devices_of(self, connection_id: uuid.UUID) -> list[uuid.UUID]:
        """Every device the connection feeds (a deletion concerns them all)."""
        rows = await self.session.scalars(
            select(DeviceSync.device_id).where(DeviceSync.connection_id == connection_id)
        )
        return list(rows.all())

    async def forget_records(self, records: Sequence[VendorRecord]) -> None:
        for record in records:
            await self.session.delete(record)

    async def forget_between(self, connection_id: uuid.UUID, metric: str, start: datetime,
                             end: datetime) -> None:  # fmt: skip
        """The vendor ids of readings of ``metric`` from ``start`` to ``end`` (deleted)."""
        await self.session.execute(
            delete(VendorRecord).where(
                VendorRecord.connection_id == connection_id, VendorRecord.metric == metric,
                VendorRecord.ts >= start, VendorRecord.ts < end)
        )  # fmt: skip

    def log(self, rows: Sequence[HealthAccess]) -> None:
        self.session.add_all(list(rows))
