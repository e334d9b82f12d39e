"""All SQL of the webhooks domain: webhooks and the delivery queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.paging import scalars_page
from fieldwatch.db.upsert import insert_for
from fieldwatch.webhooks.models import DELIVERED, PENDING, Webhook, WebhookDelivery


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, webhook: Webhook) -> None:
        self.session.add(webhook)

    async def get(self, workspace_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook | None:
        return await self.session.scalar(
            select(Webhook).where(Webhook.id == webhook_id, Webhook.workspace_id == workspace_id)
        )

    async def page(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[Webhook], int]:
        stmt = (
            select(Webhook)
            .where(Webhook.workspace_id == workspace_id)
            .order_by(Webhook.created_at, Webhook.id)
        )
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def count(self, workspace_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Webhook)
                .where(Webhook.workspace_id == workspace_id)
            )
            or 0
        )

    async def enabled(self, workspace_id: uuid.UUID) -> Sequence[Webhook]:
        result = await self.session.scalars(
            select(Webhook).where(Webhook.workspace_id == workspace_id, Webhook.enabled.is_(True))
        )
        return result.all()

    async def delete(self, webhook: Webhook) -> None:
        await self.session.delete(webhook)
        await self.session.flush()

    async def record_result(
        self, webhook_id: uuid.UUID, at: datetime, status: int | None, error: str | None
    ) -> None:
        """Note the outcome of a delivery attempt on the webhook (for its health)."""
        failures = 0 if error is None else Webhook.consecutive_failures + 1
        await self.session.execute(
            update(Webhook)
            .where(Webhook.id == webhook_id)
            .values(
                last_delivery_at=at,
                last_status=status,
                last_error=error,
                consecutive_failures=failures,
            )
            .execution_options(synchronize_session=False)
        )


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def queue(self, rows: list[dict[str, Any]]) -> int:
        """Insert pending deliveries; an event already queued for a webhook is skipped
        (every process on a fan-out bus receives the same event). Returns how many
        were new."""
        if not rows:
            return 0
        stmt = (
            insert_for(self.session, WebhookDelivery)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
            .returning(WebhookDelivery.id)
        )
        return len((await self.session.execute(stmt)).all())

    def add(self, delivery: WebhookDelivery) -> None:
        self.session.add(delivery)

    async def recent(
        self, webhook_id: uuid.UUID, *, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[WebhookDelivery], int]:
        """The webhook's deliveries, newest first, and how many there are."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if status is not None:
            stmt = stmt.where(WebhookDelivery.status == status)
        stmt = stmt.order_by(WebhookDelivery.id.desc())
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[WebhookDelivery, Webhook]]:
        """Take up to ``limit`` due deliveries of enabled webhooks and push their
        ``next_attempt_at`` to ``lease_until`` in one statement, so that no other worker
        takes them while they are being sent (and they come back if this process dies
        mid-send).

        On PostgreSQL the candidate rows are locked with ``FOR UPDATE SKIP LOCKED``:
        several processes share the queue without waiting on each other. On SQLite the
        single ``UPDATE`` takes the write lock at once. The caller commits.
        """
        due = (
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                Webhook.enabled.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if self.session.bind.dialect.name == "postgresql":
            due = due.with_for_update(of=WebhookDelivery, skip_locked=True)
        claimed = await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()))
            .values(next_attempt_at=lease_until)
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(claimed.scalars().all())
        if not ids:
            return []
        rows = await self.session.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id.in_(ids))
            .order_by(WebhookDelivery.id)
        )
        return [(d, w) for d, w in rows.tuples()]

    async def finish(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_attempt_at: datetime,
        status_code: int | None,
        error: str | None,
        at: datetime,
    ) -> bool:
        """Record an attempt on a still-pending delivery. False when it is gone."""
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
            .values(
                status=status,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_status_code=status_code,
                last_error=error,
                delivered_at=at if status == DELIVERED else None,
            )
            .execution_options(synchronize_session=False)
        )
        return (result.rowcount or 0) == 1  # type: ignore[attr-defined]
