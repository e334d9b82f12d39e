"""The process-wide runtime: settings, database, event bus, token codec and the
long-lived services.

Built once at start-up (``fieldwatch serve``, the CLI, tests). ``install`` puts its
components on the app, where routes reach each one by type through the dependencies of
its domain (``core.components``); nothing but the app's assembly imports this module.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from fieldwatch.alerts.dependencies import ALERT_ENGINE
from fieldwatch.alerts.engine import AlertEngine
from fieldwatch.auth.dependencies import AUTH, FORGET_CREDENTIALS, Authenticator, PrincipalCache
from fieldwatch.auth.throttle import LoginThrottle
from fieldwatch.auth.tokens import TokenCodec, load_or_create_secret
from fieldwatch.commands.delivery import CommandDispatcher
from fieldwatch.commands.dependencies import COMMANDS
from fieldwatch.core.components import BUS, SETTINGS
from fieldwatch.core.credentials import CredentialListener
from fieldwatch.core.events import CREDENTIALS_CHANGED, Event, EventBus, InProcessEventBus
from fieldwatch.core.process_roles import Duties, duties_of
from fieldwatch.core.settings import Settings
from fieldwatch.core.ttlcache import TTLCache
from fieldwatch.db.dependencies import ENGINE, SESSIONMAKER
from fieldwatch.db.engine import create_engine, create_sessionmaker
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.dependencies import CREDENTIAL_ISSUED
from fieldwatch.devices.events import DEVICE_DELETED, DEVICE_UPDATED
from fieldwatch.firmware.artifacts.dependencies import FIRMWARE_FILES
from fieldwatch.firmware.artifacts.download import FirmwareFiles
from fieldwatch.firmware.rollouts.dependencies import ROLLOUT_ENGINE
from fieldwatch.firmware.rollouts.engine import RolloutEngine
from fieldwatch.firmware.updates.dependencies import FIRMWARE_UPDATES
from fieldwatch.firmware.updates.sweeper import FirmwareUpdates
from fieldwatch.integrations.crypto import KeyRing, load_key_ring
from fieldwatch.integrations.dependencies import GOOGLE_HEALTH_KEYS, KEY_RING, SYNC_ENGINE
from fieldwatch.integrations.exports.cleanup import PERIOD as EXPORT_CLEANUP_PERIOD
from fieldwatch.integrations.sync.engine import SyncEngine
from fieldwatch.integrations.webhooks.google_signature import SignatureKeys
from fieldwatch.monitoring.dependencies import LIMITS, PRESENCE
from fieldwatch.monitoring.limits import RATE_LIMITS_CHANGED, DeviceLimiter
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.system.dependencies import REDIS
from fieldwatch.system.jobs import JobRunner
from fieldwatch.telemetry.dependencies import HUB, INGEST
from fieldwatch.telemetry.hub import TelemetryHub
from fieldwatch.telemetry.ingest.service import TelemetryService
from fieldwatch.webhooks.dependencies import WEBHOOKS
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
    #: Per-device firmware updates (the ledger's ``firmware_update`` commands).
    firmware: FirmwareUpdates
    limits: DeviceLimiter
    #: Advances running firmware rollouts.
    rollouts: RolloutEngine
    #: The one way in for readings, for every transport.
    ingest: TelemetryService
    #: Firmware blobs, download-link signer and download cap.
    firmware_files: FirmwareFiles
    #: Seals vendor-cloud credentials at rest.
    key_ring: KeyRing
    #: Runs device syncs from vendor clouds (scheduled, claimed, resumed).
    sync: SyncEngine
    #: The periodic jobs this process runs (``start``: by its role).
    jobs: JobRunner
    #: Called after commit when a device token or a provisioning key is issued: an
    #: external broker that checks logins itself learns the secret here (in process:
    #: secrets never go through the event bus).
    credential_listeners: list[CredentialListener] = field(default_factory=list)
    redis: Redis | None = None  # shared presence and latest values, when configured
    #: API callers authenticated in the last ``auth_cache_s`` seconds: not looked up
    #: again. See ``forget_credentials``.
    principals: PrincipalCache = field(default_factory=lambda: TTLCache(0.0))

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

    @property
    def duties(self) -> Duties:
        """What this process runs, by its role (``FIELDWATCH_ROLE``)."""
        return duties_of(self.settings.role)

    async def start_bus(self) -> None:
        """Connect a broker-backed bus (the in-process one needs nothing)."""
        start = getattr(self.bus, "start", None)
        if start is not None and not getattr(self.bus, "started", False):
            await start()

    async def start(self) -> None:
        """Start what needs the event loop: the bus, the telemetry writer, presence, and
        the background work of this process's role (``schedule_jobs``)."""
        await self.start_bus()
        await self.telemetry.start()
        await self.presence.start()
        if self.duties.jobs:
            await self.webhooks.start()
        schedule_jobs(self)

    async def stop_work(self) -> None:
        """Stop the background work (jobs, syncs, writers); the database stays open."""
        await self.jobs.stop()
        await self.sync.stop()  # first: its runs write through the telemetry writer
        await self.telemetry.stop()
        await self.presence.stop()
        await self.webhooks.stop()

    async def close(self) -> None:
        try:
            await self.stop_work()
            close_bus = getattr(self.bus, "close", None)
            if close_bus is not None:
                await close_bus()
        finally:
            try:
                if self.redis is not None:
                    await self.redis.aclose()
            finally:
                await self.engine.dispose()


def schedule_jobs(rt: Runtime) -> None:
    """Start the periodic jobs of the process's role (``system.jobs``): a gateway resends
    what its devices did not acknowledge; a worker runs the rest, each tick of a shared
    job in one worker (claimed on PostgreSQL)."""
    settings, jobs, duties = rt.settings, rt.jobs, rt.duties
    if duties.devices:
        jobs.start("command-resend", settings.command_sweep_s, rt.commands.resend_due,
                   shared=False)  # fmt: skip
    if not duties.jobs:
        return
    jobs.start("presence-sweep", settings.presence_sweep_s, rt.presence.sweep_and_flush,
               shared=rt.redis is not None)  # in memory: each process's own  # fmt: skip
    jobs.start("telemetry-retention", settings.retention_interval_s,
               rt.telemetry.retention.run_and_log)  # fmt: skip
    jobs.start("command-expiry", settings.command_sweep_s, rt.commands.expire_due)
    jobs.start("firmware-deadlines", settings.firmware_sweep_s, rt.firmware.sweep)
    jobs.start("rollouts", rt.rollouts.interval_s, rt.rollouts.run)
    jobs.start("sync-schedule", settings.sync_tick_s, rt.sync.schedule)
    jobs.start("sync-claim", settings.sync_tick_s, rt.sync.claim, shared=False)
    rt.sync.refill_freed_slots = True
    if settings.vendor_webhooks:
        jobs.start("vendor-subscriptions", settings.vendor_webhook_check_s,
                   rt.sync.subscriptions.run_if_on)  # fmt: skip
    jobs.start("health-export-cleanup", EXPORT_CLEANUP_PERIOD.total_seconds(),
               rt.sync.exports.run_safely)  # fmt: skip


def redis_client(settings: Settings) -> Redis | None:
    """A fixed pool that callers wait on (10 s, then an error): redis-py's default pool
    refuses a caller beyond its connections, which a gateway's connect burst hit."""
    if not settings.redis_url:
        return None
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_pool_size, timeout=10
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


def build_runtime(settings: Settings, *, bus: EventBus | None = None) -> Runtime:
    settings.check_production_safety()
    engine = create_engine(
        settings.resolved_database_url, pool_size=settings.db_pool_size, echo=settings.db_echo,
        pgbouncer=settings.db_pgbouncer,
    )  # fmt: skip
    secret = load_or_create_secret(settings)
    codec = TokenCodec(
        secret,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        ttl_s=settings.access_token_ttl_s,
    )
    if bus is None and settings.rabbitmq_url:
        from fieldwatch.core.bus_rabbitmq import RabbitMQEventBus

        bus = RabbitMQEventBus(settings.rabbitmq_url, settings.rabbitmq_exchange)
    sessionmaker = create_sessionmaker(engine)
    bus = bus or InProcessEventBus()
    redis = redis_client(settings)
    telemetry = TelemetryHub(settings, engine, sessionmaker)
    telemetry.subscribe(bus)
    if redis is not None:
        telemetry.latest.use_redis(redis, settings.redis_prefix)
    duties = duties_of(settings.role)
    webhooks = WebhookDispatcher(settings, sessionmaker)
    alerts = AlertEngine(sessionmaker, bus)
    alerts.subscribe(bus)
    if duties.jobs:
        webhooks.subscribe(bus)
        alerts.subscribe_jobs(bus)
    commands = CommandDispatcher(settings, sessionmaker, bus)
    if duties.devices:  # a command created elsewhere reaches the process holding its device
        commands.subscribe(bus)
    firmware_files = FirmwareFiles.build(settings, secret)
    firmware = FirmwareUpdates(settings, sessionmaker, bus, commands, firmware_files.signer)
    limits = DeviceLimiter(settings, sessionmaker)
    bus.subscribe(RATE_LIMITS_CHANGED, limits.on_changed)
    bus.subscribe(DEVICE_UPDATED, limits.on_device_changed)
    bus.subscribe(DEVICE_DELETED, limits.on_device_changed)
    presence = PresenceTracker(settings, sessionmaker, bus, redis=redis)
    ingest = TelemetryService(telemetry, presence, bus, alerts)
    ring = load_key_ring(settings)
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
        firmware=firmware,
        limits=limits,
        rollouts=RolloutEngine(
            lambda: UnitOfWork(sessionmaker, bus),
            firmware.service,
            interval_s=settings.firmware_rollout_tick_s,
        ),
        ingest=ingest,
        firmware_files=firmware_files,
        key_ring=ring,
        sync=SyncEngine(lambda: UnitOfWork(sessionmaker, bus), settings, ingest, ring),
        jobs=JobRunner(sessionmaker, claims=engine.dialect.name == "postgresql"),
        redis=redis,
        principals=TTLCache(settings.auth_cache_s),
    )
    bus.subscribe(CREDENTIALS_CHANGED, runtime._on_credentials_changed)
    return runtime


def install(app: Starlette, runtime: Runtime) -> None:
    """Put the runtime's components on ``app`` for the routes' dependencies. The whole
    runtime stays on ``app.state.runtime`` for the app's lifespan and the device edges."""
    app.state.runtime = runtime
    SETTINGS.put(app, runtime.settings)
    BUS.put(app, runtime.bus)
    ENGINE.put(app, runtime.engine)
    SESSIONMAKER.put(app, runtime.sessionmaker)
    AUTH.put(
        app,
        Authenticator(runtime.settings, runtime.codec, runtime.throttle, runtime.principals),
    )
    FORGET_CREDENTIALS.put(app, runtime.forget_credentials)
    CREDENTIAL_ISSUED.put(app, runtime.credential_issued)
    HUB.put(app, runtime.telemetry)
    INGEST.put(app, runtime.ingest)
    PRESENCE.put(app, runtime.presence)
    LIMITS.put(app, runtime.limits)
    ALERT_ENGINE.put(app, runtime.alerts)
    COMMANDS.put(app, runtime.commands)
    FIRMWARE_UPDATES.put(app, runtime.firmware)
    ROLLOUT_ENGINE.put(app, runtime.rollouts)
    WEBHOOKS.put(app, runtime.webhooks)
    REDIS.put(app, runtime.redis)
    FIRMWARE_FILES.put(app, runtime.firmware_files)
    KEY_RING.put(app, runtime.key_ring)
    SYNC_ENGINE.put(app, runtime.sync)
    GOOGLE_HEALTH_KEYS.put(app, SignatureKeys())
