"""Request ids, access logs and Prometheus metrics, as one ASGI middleware."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fieldwatch.core.components import Slot
from fieldwatch.core.context import request_id_var
from fieldwatch.core.redact import RedactSecrets
from fieldwatch.db.faults import FoldOutages

log = logging.getLogger("fieldwatch.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fieldwatch_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fieldwatch_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.unavailable = Counter(
            "fieldwatch_http_unavailable_total",
            "HTTP answers 503: the database is unavailable, or the write path is saturated",
            ["reason"],
            registry=self.registry,
        )


#: The app's metrics (its registry and the HTTP figures).
METRICS: Slot[Metrics] = Slot("metrics")

#: Seconds: for latencies of a commit, a delivery.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Distribution:
    """Observations counted in fixed buckets: the figures of a Prometheus histogram, kept
    by the component where they happen without a registry (no lock, a few integers) and
    read at scrape time (``family``)."""

    __slots__ = ("bounds", "buckets", "count", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.buckets = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        bounds = (*map(floatToGoString, self.bounds), "+Inf")
        for bound, n in zip(bounds, self.buckets, strict=True):
            running += n
            cumulative.append((bound, running))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.total)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/devices/{device_id}``): bounded label
    values, and no ids or secrets in metrics. The router records the route in the scope."""
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status_code)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            log.info(
                "%s %s %s %.1fms",
                method,
                scope["path"],  # masked by RedactSecrets, like every record
                status_code,
                elapsed * 1000,
                extra={"status": status_code, "duration_ms": round(elapsed * 1000, 1)},
            )
            request_id_var.reset(token)


class _JsonFormatter(logging.Formatter):
    _skip = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        out.update({k: v for k, v in record.__dict__.items() if k not in self._skip})
        if record.exc_info:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id_var.get()
        return f"{line} [{rid}]" if rid else line


#: Third-party loggers that print handshake headers, frames, packets or statement
#: parameters (stored secrets among them) below these levels: the ``websockets``
#: library logs through ``uvicorn.error`` under uvicorn; python-engineio logs each
#: packet with its data at INFO; amqtt every connection at INFO and its packets at DEBUG.
CHATTY_LOGGERS = {
    "uvicorn.error": logging.INFO,
    "websockets": logging.INFO,
    "engineio": logging.WARNING,
    "socketio": logging.WARNING,
    "amqtt": logging.WARNING,
    "transitions": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "aiosqlite": logging.INFO,
    "asyncpg": logging.INFO,
}


def configure_logging(level: str, fmt: str) -> None:
    """One handler on the root logger, to stderr, text or JSON; every record it writes
    (third-party ones too) passes through ``RedactSecrets`` first."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(FoldOutages())  # a database outage: one warning, not a traceback each
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own logging set-up (when something ran it with its default config) gives
    # its loggers handlers of their own that would bypass ours, filters included.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        own = logging.getLogger(name)
        own.handlers.clear()
        own.propagate = True
    for noisy in ("uvicorn.access",):  # our middleware logs requests
        logging.getLogger(noisy).disabled = True
    if root.level > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    for name, quietest in CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quietest, root.level))
