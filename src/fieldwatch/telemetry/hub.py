"""Process-wide telemetry state: the group-commit writer and small caches."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.core.ttlcache import TTLCache
from fieldwatch.telemetry.ingest.store import PostgresReadingStore, ReadingStore, SqliteReadingStore
from fieldwatch.telemetry.ingest.writer import ReadingWriter
from fieldwatch.telemetry.query.latest import LatestValues
from fieldwatch.telemetry.storage.repository import TelemetryRepository
from fieldwatch.telemetry.storage.retention import RetentionManager

RETENTION_CACHE_S = 60.0


@dataclass(slots=True)
class SeriesInfo:
    id: int
    kind: str
    unit: str | None
    #: The newest reading known to be stored (by this process, or when loaded).
    newest: datetime | None = None


class TelemetryHub:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        store: ReadingStore
        if engine.dialect.name == "postgresql":
            dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            store = PostgresReadingStore(
                dsn, connections=settings.ingest_writers, pgbouncer=settings.db_pgbouncer
            )
        else:
            store = SqliteReadingStore(engine)
        self.store = store
        self.writer = ReadingWriter(
            store,
            max_pending=settings.ingest_max_pending,
            max_batch=settings.ingest_max_batch,
            workers=settings.ingest_writers if engine.dialect.name == "postgresql" else 1,
        )
        self.series: dict[tuple[uuid.UUID, str], SeriesInfo] = {}
        #: How many series (distinct metrics) each device has, as this process last
        #: counted or created them: a device's series only go away with the device.
        self.series_counts: dict[uuid.UUID, int] = {}
        #: SQLite: counting and creating series one request at a time (PostgreSQL locks
        #: per device in the database, see ``TelemetryRepository.lock_series_of``).
        self.series_lock = asyncio.Lock()
        self.latest = LatestValues(sessionmaker)
        #: Maintenance: a worker's periodic job (``RetentionManager.run_and_log``).
        self.retention = RetentionManager(engine, sessionmaker, settings.retention_days)
        self._retention: dict[uuid.UUID, tuple[int, float]] = {}
        # Hot-path caches, a couple of seconds long; dropped at once on the events that
        # change what they hold (in every process, when the bus is RabbitMQ).
        self.writers: TTLCache[str, Any] = TTLCache(settings.auth_cache_s)
        self.device_status: TTLCache[uuid.UUID, tuple[uuid.UUID, str, str]] = TTLCache(
            settings.device_cache_s
        )

    def subscribe(self, bus: EventBus) -> None:
        # (``writers`` is also dropped on auth.credentials_changed: see
        # Runtime.forget_credentials.)
        async def forget_device(event: Event) -> None:
            self.writers.clear()
            if event.subject_id is not None:
                self.device_status.pop(event.subject_id)
                if event.type == "device.deleted":
                    self.forget_device(event.subject_id)

        bus.subscribe("device.status_changed", forget_device)
        bus.subscribe("device.deleted", forget_device)

    async def start(self) -> None:
        if isinstance(self.store, PostgresReadingStore):
            await self.store.start()
        self.writer.start()
        await self.latest.start()

    async def stop(self) -> None:
        await self.latest.stop()
        await self.writer.stop()

    async def retention_days(self, workspace_id: uuid.UUID) -> int:
        hit = self._retention.get(workspace_id)
        now = time.monotonic()
        if hit is not None and now - hit[1] < RETENTION_CACHE_S:
            return hit[0]
        async with self.sessionmaker() as session:
            days = await TelemetryRepository(session).retention_days(workspace_id)
        value = days or self.settings.retention_days
        self._retention[workspace_id] = (value, now)
        return value

    def remember_device(
        self, device_id: uuid.UUID, workspace_id: uuid.UUID, status: str, type_: str
    ) -> None:
        """What a credential check just read of the device: ingestion need not look it
        up again while it is cached."""
        self.device_status.put(device_id, (workspace_id, status, type_))

    def forget_retention(self, workspace_id: uuid.UUID) -> None:
        self._retention.pop(workspace_id, None)

    def forget_device(self, device_id: uuid.UUID) -> None:
        for key in [k for k in self.series if k[0] == device_id]:
            del self.series[key]
        self.series_counts.pop(device_id, None)
        self.latest.forget_device(device_id)
