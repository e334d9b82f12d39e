"""The process-wide runtime: settings, database, event bus, token codec.

Built once at start-up (``fieldwatch serve``, the CLI, tests) and shared by every
request through FastAPI dependencies.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fieldwatch.alerts.engine import AlertEngine
from fieldwatch.auth.principal import Principal
from fieldwatch.auth.throttle import LoginThrottle
from fieldwatch.auth.tokens import TokenCodec, load_or_create_secret
from fieldwatch.commands.delivery import CommandDispatcher
from fieldwatch.core.credentials import CredentialListener
from fieldwatch.core.events import CREDENTIALS_CHANGED, Event, EventBus, InProcessEventBus
from fieldwatch.core.settings import Settings
from fieldwatch.core.ttlcache import TTLCache
from fieldwatch.db.engine import create_engine, create_sessionmaker
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.events import DEVICE_DELETED, DEVICE_UPDATED
from fieldwatch.monitoring.limits import RATE_LIMITS_CHANGED, DeviceLimiter
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.telemetry.hub import TelemetryHub
from fieldwatch.telemetry.ingest.service import TelemetryService
from fieldwatch.webhooks.dispatcher import WebhookDispatcher

if TYPE_CHECKING:
    from redis.asyncio import Redis


log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bus: EventBus
    codec: TokenCodec
    throttle: LoginThrottle
    telemetry: TelemetryHub
    presence: PresenceTracker
    webhooks: WebhookDispatcher
    alerts: AlertEngine
    commands: CommandDispatcher
    limits: DeviceLimiter
    #: The one way in for readings, for every transport.
    ingest: TelemetryService
    #: Called after commit when a device token or a provisioning key is issued: an
    #: external broker that checks logins itself learns the secret here (in process:
    #: secrets never go through the event bus).
    credential_listeners: list[CredentialListener] = field(default_factory=list)
    redis: Redis | None = None  # shared presence and latest values, when configured
    #: API callers (``hint|bearer``) authenticated in the last ``auth_cache_s`` seconds:
    #: not looked up again. Each entry: the principal and, for an access token or an
    #: API key that expires, its expiry (epoch seconds). See ``forget_credentials``.
    principals: TTLCache[str, tuple[Principal, float | None]] = field(
        default_factory=lambda: TTLCache(0.0)
    )

    async def credential_issued(
        self, kind: str, owner_id: uuid.UUID, credential_id: uuid.UUID, secret: str
    ) -> None:
        for listener in self.credential_listeners:
            try:
                await listener(kind, owner_id, credential_id, secret)
            except Exception:
                log.exception("a credential listener failed (%s %s)", kind, credential_id)

    def forget_credentials(self) -> None:
        """Drop every cached credential check (API callers, telemetry writers). Runs on
        ``auth.credentials_changed`` from any process, and directly in the process that
        made the change (a broker bus delivers the event to it only later)."""
        self.principals.clear()
        self.telemetry.writers.clear()

    async def _on_credentials_changed(self, event: Event) -> None:
        self.forget_credentials()

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker, self.bus)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def start_bus(self) -> None:
        """Connect a broker-backed bus (the in-process one needs nothing)."""
        start = getattr(self.bus, "start", None)
        if start is not None and not getattr(self.bus, "started", False):
            await start()

    async def start(self) -> None:
        """Start what needs the event loop: the bus, the telemetry writer, presence."""
        await self.start_bus()
        await self.telemetry.start()
        await self.presence.start()
        await self.webhooks.start()
        await self.commands.start()

    async def close(self) -> None:
        try:
            await self.telemetry.stop()
            await self.presence.stop()
            await self.webhooks.stop()
            await self.commands.stop()
            close_bus = getattr(self.bus, "close", None)
            if close_bus is not None:
                await close_bus()
        finally:
            try:
                if self.redis is not None:
                    await self.redis.aclose()
            finally:
                await self.engine.dispose()


def build_runtime(settings: Settings, *, bus: EventBus | None = None) -> Runtime:
    settings.check_production_safety()
    engine = create_engine(
        settings.resolved_database_url, pool_size=settings.db_pool_size, echo=settings.db_echo
    )
    codec = TokenCodec(
        load_or_create_secret(settings),
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        ttl_s=settings.access_token_ttl_s,
    )
    if bus is None and settings.rabbitmq_url:
        from fieldwatch.core.bus_rabbitmq import RabbitMQEventBus

        bus = RabbitMQEventBus(settings.rabbitmq_url, settings.rabbitmq_exchange)
    sessionmaker = create_sessionmaker(engine)
    bus = bus or InProcessEventBus()
    redis: Redis | None = None
    if settings.redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(settings.redis_url)
    telemetry = TelemetryHub(settings, engine, sessionmaker)
    telemetry.subscribe(bus)
    if redis is not None:
        telemetry.latest.use_redis(redis, settings.redis_prefix)
    webhooks = WebhookDispatcher(settings, sessionmaker)
    webhooks.subscribe(bus)
    alerts = AlertEngine(sessionmaker, bus)
    alerts.subscribe(bus)
    commands = CommandDispatcher(settings, sessionmaker, bus)
    commands.subscribe(bus)
    limits = DeviceLimiter(settings, sessionmaker)
    bus.subscribe(RATE_LIMITS_CHANGED, limits.on_changed)
    bus.subscribe(DEVICE_UPDATED, limits.on_device_changed)
    bus.subscribe(DEVICE_DELETED, limits.on_device_changed)
    presence = PresenceTracker(settings, sessionmaker, bus, redis=redis)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        bus=bus,
        codec=codec,
        throttle=LoginThrottle(settings.login_max_failures, settings.login_failure_window_s),
        telemetry=telemetry,
        presence=presence,
        webhooks=webhooks,
        alerts=alerts,
        commands=commands,
        limits=limits,
        ingest=TelemetryService(telemetry, presence, bus, alerts),
        redis=redis,
        principals=TTLCache(settings.auth_cache_s),
    )
    bus.subscribe(CREDENTIALS_CHANGED, runtime._on_credentials_changed)
    return runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_uow(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[UnitOfWork]:
    """One unit of work per request. Routes that change data call ``uow.commit()``
    before answering; anything not committed is rolled back when the request ends."""
    async with runtime.uow() as uow:
        yield uow


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
UowDep = Annotated[UnitOfWork, Depends(get_uow)]
