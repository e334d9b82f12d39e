"""Operational endpoints: health, liveness, readiness and Prometheus metrics.

``/health``: every configured component checked (``health``), answering 503 when the
database is away (as it always has: the platform runs on without MQTT, say).
``/health/live``: the process runs (its event loop answers); no I/O. ``/health/ready``:
503 naming the failing components when any configured one is down. ``/metrics``: the
HTTP figures and the platform's own (``metrics``), in the app's registry.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fieldwatch import __version__
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.observability import METRICS
from fieldwatch.db.dependencies import EngineDep
from fieldwatch.system import health as checks
from fieldwatch.system.metrics import FiguresDep

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(request: Request, engine: EngineDep, settings: SettingsDep) -> JSONResponse:
    """Every configured component (database, MQTT, Redis, RabbitMQ) with its state, and the
    process's role; 503 when the database is not reachable with a current schema."""
    found, _failing = await checks.report(request.app, engine)
    ok = found["database"]["status"] == "ok"
    body = {"status": "ok" if ok else "error", "version": __version__, "role": settings.role,
            "checks": found}  # fmt: skip
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/health/live")
async def live() -> dict[str, str]:
    """Liveness: the process works. Restart it when this does not answer."""
    return {"status": "ok", "version": __version__}


@router.get("/health/ready")
async def ready(request: Request, engine: EngineDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: the database answers with a current schema, and each configured MQTT
    gateway, Redis and RabbitMQ is up; else 503, with the failing ones in ``failing``."""
    found, failing = await checks.report(request.app, engine)
    body = {
        "status": "error" if failing else "ok",
        "version": __version__,
        "role": settings.role,
        "checks": found,
        "failing": failing,
    }
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, figures: FiguresDep) -> Response:
    await figures.refresh()
    registry = METRICS.of(request.app).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
