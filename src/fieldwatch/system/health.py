"""Health: what each configured component says, for ``/health`` and ``/health/ready``.

Every check reports ``status`` (``ok``, ``degraded`` or ``error``) and what it saw. The
database is always checked (reachable, schema current); the others when they are
configured: the MQTT gateway when this process runs MQTT (connected to its broker; the
embedded broker listening), Redis (``FIELDWATCH_REDIS_URL``: it answers a PING) and
RabbitMQ (``FIELDWATCH_RABBITMQ_URL``: the event bus is connected). Each one configured
is required: the process is ready only when every check is ``ok``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from fieldwatch.core.components import BUS, SETTINGS
from fieldwatch.db import migrate
from fieldwatch.system.dependencies import EDGE, REDIS
from fieldwatch.transports.edge import DeviceEdge

if TYPE_CHECKING:
    from redis.asyncio import Redis

Check = dict[str, Any]
PING_TIMEOUT_S = 2.0


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def database(engine: AsyncEngine) -> Check:
    started = time.perf_counter()
    check: Check = {"backend": engine.dialect.name}
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        check["latency_ms"] = _ms(started)
        up_to_date = await migrate.is_up_to_date(engine)
        check["schema"] = "current" if up_to_date else "outdated"
        check["status"] = "ok" if up_to_date else "degraded"
    except Exception as exc:  # the point of a health check is to report, not to raise
        check.update(status="error", error=type(exc).__name__)
    return check


async def redis(client: Redis | None) -> Check:
    if client is None:
        return {"status": "error", "error": "not connected"}
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await client.ping()
    except Exception as exc:
        return {"status": "error", "error": type(exc).__name__}
    return {"status": "ok", "latency_ms": _ms(started)}


def rabbitmq(bus: object) -> Check:
    up = bool(getattr(bus, "connected", False))
    return {"status": "ok"} if up else {"status": "error", "error": "not connected"}


def mqtt(edge: DeviceEdge, external: bool) -> Check:
    gateway = edge.mqtt
    check: Check = {"broker": "external" if external else "embedded"}
    if gateway is None or gateway.link is None:
        return {**check, "status": "error", "error": "not running"}
    link = gateway.link
    check.update(connected=link.connected, pending=link.pending, lag_s=round(link.lag(), 3))
    if gateway.broker is not None:
        check["listening"] = gateway.broker.running
    check["status"] = "ok" if gateway.serving() else "error"
    return check


async def report(app: Starlette, engine: AsyncEngine) -> tuple[dict[str, Check], list[str]]:
    """Every configured component's check, and the names of those not ``ok``."""
    settings = SETTINGS.of(app)
    checks: dict[str, Check] = {"database": await database(engine)}
    edge = EDGE.get(app)
    if edge is not None and edge.mqtt_expected:
        checks["mqtt"] = mqtt(edge, bool(settings.mqtt_url))
    if settings.redis_url:
        checks["redis"] = await redis(REDIS.get(app))
    if settings.rabbitmq_url:
        checks["rabbitmq"] = rabbitmq(BUS.get(app))
    failing = [name for name, check in checks.items() if check["status"] != "ok"]
    return checks, failing
