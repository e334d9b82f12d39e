"""Operational endpoints: health and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from fieldwatch import __version__
from fieldwatch.db import migrate
from fieldwatch.db.dependencies import EngineDep

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(engine: EngineDep) -> JSONResponse:
    """Liveness and readiness: the database answers and its schema is current."""
    started = time.perf_counter()
    database: dict[str, object] = {"backend": engine.dialect.name}
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        database["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        up_to_date = await migrate.is_up_to_date(engine)
        database["schema"] = "current" if up_to_date else "outdated"
        database["status"] = "ok" if up_to_date else "degraded"
    except Exception as exc:  # the point of a health check is to report, not to raise
        database.update(status="error", error=type(exc).__name__)
    ok = database["status"] == "ok"
    body = {
        "status": "ok" if ok else "error",
        "version": __version__,
        "checks": {"database": database},
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
