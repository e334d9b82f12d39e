"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fieldwatch import __version__, console
from fieldwatch.alerts.router import router as alerts_router
from fieldwatch.auth.router import router as auth_router
from fieldwatch.commands.router import router as commands_router
from fieldwatch.core.errors import install_error_handlers
from fieldwatch.core.observability import (
    METRICS,
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
)
from fieldwatch.core.process_roles import duties_of
from fieldwatch.core.settings import Settings, get_settings
from fieldwatch.db.faults import quiet_event_loop
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.group_router import router as device_groups_router
from fieldwatch.devices.provisioning_router import router as provisioning_router
from fieldwatch.devices.router import router as devices_router
from fieldwatch.firmware.artifacts.dependencies import FIRMWARE_FILES
from fieldwatch.firmware.artifacts.download import DownloadsCollector
from fieldwatch.firmware.artifacts.router import router as firmware_artifacts_router
from fieldwatch.firmware.rollouts.router import router as rollouts_router
from fieldwatch.firmware.updates.device_router import router as firmware_device_router
from fieldwatch.firmware.updates.router import router as firmware_updates_router
from fieldwatch.integrations.analytics.router import router as analytics_router
from fieldwatch.integrations.privacy.router import router as privacy_router
from fieldwatch.integrations.router import router as integrations_router
from fieldwatch.integrations.sync.router import router as sync_router
from fieldwatch.inventory.router import router as inventory_router
from fieldwatch.monitoring.limits import LimitsCollector
from fieldwatch.monitoring.router import router as monitoring_router
from fieldwatch.realtime import RealtimeServer
from fieldwatch.runtime import Runtime, build_runtime, install
from fieldwatch.system import docs as api_docs
from fieldwatch.system.dependencies import EDGE
from fieldwatch.system.jobs import JobsCollector
from fieldwatch.system.metrics import FIGURES, PlatformFigures
from fieldwatch.system.router import router as system_router
from fieldwatch.telemetry.router import router as telemetry_router
from fieldwatch.transports import websocket as device_gateway
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt.gateway import start_credential_sync, start_gateway
from fieldwatch.transports.ws_listener import start_listener
from fieldwatch.webhooks.router import router as webhooks_router

DESCRIPTION = """
Fieldwatch keeps the inventory of a device fleet (in stock, reserved, deployed, in
maintenance, retired) with an audit trail, and the registry the live devices talk to.

Authenticate with `POST /api/v1/auth/login`, then send `Authorization: Bearer <token>`.
Errors are RFC 9457 problem documents (`application/problem+json`).
"""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. Pass a ``runtime`` to share one (tests, embedding); otherwise one is
    built from ``settings`` at start-up and closed at shutdown. What it serves follows
    the settings' role (``core.process_roles``): every process answers ``/health``,
    ``/health/live``, ``/health/ready`` and ``/metrics``; an api the API, its docs and the
    console; a gateway the device WebSocket path."""
    settings = settings or (runtime.settings if runtime else get_settings())
    owns_runtime = runtime is None
    duties = duties_of(settings.role)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_runtime:
            install(app, build_runtime(settings))
        runtime: Runtime = app.state.runtime
        edge = device_edge(runtime)
        EDGE.put(app, edge)
        realtime: RealtimeServer | None = getattr(app.state, "realtime", None)
        quiet_event_loop(asyncio.get_running_loop())  # a database outage logs once
        try:
            if owns_runtime:
                await runtime.start()
                # The start-up objects live as long as the process: keep the cyclic
                # garbage collector from re-scanning them on every collection, and let
                # the young generation grow (telemetry parsing allocates many small
                # objects per request).
                gc.freeze()
                gc.set_threshold(runtime.settings.gc_young_threshold, 20, 100)
                if duties.devices:
                    await start_gateway(edge)  # MQTT, as the settings say
                    await start_listener(edge)  # the device port, if set
                elif duties.api:  # credentials issued here reach an external broker
                    await start_credential_sync(edge)
            if realtime is not None:  # Socket.IO push, when served by create_asgi_app
                await realtime.start(runtime)
            yield
        finally:
            if realtime is not None:
                await realtime.stop()
            await edge.stop()
            if owns_runtime:
                await runtime.close()

    app = FastAPI(
        title="Fieldwatch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by system.docs, so they work offline
        redoc_url=None,
    )
    if runtime is not None:
        install(app, runtime)
    metrics = Metrics()
    metrics.registry.register(
        LimitsCollector(lambda: getattr(getattr(app.state, "runtime", None), "limits", None))
    )
    metrics.registry.register(DownloadsCollector(lambda: FIRMWARE_FILES.get(app)))
    metrics.registry.register(
        JobsCollector(lambda: getattr(getattr(app.state, "runtime", None), "jobs", None))
    )
    figures = PlatformFigures(app)
    metrics.registry.register(figures)
    METRICS.put(app, metrics)
    FIGURES.put(app, figures)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    install_error_handlers(app)
    app.include_router(system_router)
    if duties.api:
        install_api(app)
    if duties.devices:
        device_gateway.install(app)  # WS /ws/device: the device gateway
    return app


def install_api(app: FastAPI) -> None:
    """The API (device uploads and downloads included), its docs and the console."""
    api_docs.install(app)
    app.include_router(telemetry_router)  # first: the ingest hot path matches sooner
    app.include_router(auth_router)
    app.include_router(inventory_router)  # before devices: /devices/import is a fixed path
    app.include_router(monitoring_router)  # before devices: /devices/health/summary too
    app.include_router(devices_router)
    app.include_router(device_groups_router)
    app.include_router(provisioning_router)
    app.include_router(webhooks_router)
    app.include_router(alerts_router)
    app.include_router(commands_router)
    app.include_router(firmware_artifacts_router)
    app.include_router(rollouts_router)
    app.include_router(firmware_updates_router)
    app.include_router(firmware_device_router)
    app.include_router(privacy_router)
    app.include_router(analytics_router)
    app.include_router(integrations_router)
    app.include_router(sync_router)
    console.install(app)  # the web console at /console/


def device_edge(runtime: Runtime) -> DeviceEdge:
    """What the device transports get of ``runtime`` (they never see the runtime)."""
    return DeviceEdge(
        settings=runtime.settings,
        uow=runtime.uow,
        bus=runtime.bus,
        ingest=runtime.ingest,
        presence=runtime.presence,
        limits=runtime.limits,
        commands=runtime.commands,
        firmware=runtime.firmware,
        codec=runtime.codec,
        throttle=runtime.throttle,
        credential_listeners=runtime.credential_listeners,
        credential_issued=runtime.credential_issued,
    )


class AppFront:
    """ASGI: ``app`` (the FastAPI app, or what is in front of it), with the FastAPI app
    at hand as ``fastapi_app`` (as ``DeviceSocketsFirst`` has it): a process without
    device sessions."""

    def __init__(self, app: Any, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


ServedApp = device_gateway.DeviceSocketsFirst | AppFront


def create_asgi_app(settings: Settings | None = None, runtime: Runtime | None = None) -> ServedApp:
    """What ``fieldwatch serve`` runs: the FastAPI app with Socket.IO in front of it at
    ``/ws/monitoring`` (dashboards' live push; an api), and the device WebSockets in front
    of both (a gateway). Same arguments as ``create_app``."""
    app = create_app(settings, runtime)
    settings = settings or (runtime.settings if runtime else get_settings())
    duties = duties_of(settings.role)
    front: Any = app
    if duties.api:
        realtime = RealtimeServer(settings)
        app.state.realtime = realtime
        front = realtime.asgi_app(app)
    if duties.devices:
        return device_gateway.DeviceSocketsFirst(front, app)
    return AppFront(front, app)


def create_worker_app() -> ServedApp:
    """What each process of ``fieldwatch serve --workers N`` runs. A worker is a fresh
    (spawned) interpreter without the parent's logging set-up: it configures its own
    first, so its records are written, and with their secrets masked."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_asgi_app(settings)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for serving the app (``fieldwatch serve``, tests): WebSocket
    messages above the device frame limit are refused by the server itself (close code
    1009) before they are buffered; uvicorn's own default would read up to 16 MiB."""
    return {
        "ws_max_size": settings.ws_max_frame_bytes,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }


@asynccontextmanager
async def standalone_uow(
    settings: Settings | None = None, *, start_bus: bool = False
) -> AsyncIterator[UnitOfWork]:
    """A unit of work outside any request (the command line): a runtime of its own,
    closed afterwards. ``start_bus`` connects a broker-backed event bus first, for work
    whose events must reach the running servers."""
    runtime = build_runtime(settings or get_settings())
    try:
        if start_bus:
            await runtime.start_bus()
        async with runtime.uow() as uow:
            yield uow
    finally:
        await runtime.close()
