"""The platform's own figures for Prometheus, read at scrape time.

The components count where things happen (plain numbers, no registry: ingestion, the
group-commit writer, the event bus, webhook and command delivery, the MQTT gateway);
``PlatformFigures``, registered in the app's registry, turns what they hold into
metrics when ``/metrics`` is read. Fleet-wide counts come from the database (one
GROUP BY each), read at most every ``cache_s`` seconds. No label names a device or a
workspace. The README lists every metric.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, get_args

from fastapi import Depends
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette

from fieldwatch.alerts.schemas import Severity
from fieldwatch.commands.dependencies import COMMANDS
from fieldwatch.commands.models import STATES
from fieldwatch.core.components import BUS, Slot
from fieldwatch.db.dependencies import SESSIONMAKER
from fieldwatch.db.faults import outages
from fieldwatch.system.dependencies import EDGE
from fieldwatch.system.repository import FleetCounts, SystemRepository
from fieldwatch.telemetry.dependencies import HUB, INGEST
from fieldwatch.telemetry.ingest.service import OUTCOMES
from fieldwatch.transports.mqtt.refusals import REASONS
from fieldwatch.webhooks.dependencies import WEBHOOKS

log = logging.getLogger(__name__)

DB_CACHE_S = 5.0
TRANSPORTS = ("http", "websocket", "mqtt", "sync")


def counter(
    name: str, doc: str, labels: list[str], counts: Mapping[Any, int], known: Iterable[Any]
) -> CounterMetricFamily:
    """A counter family from ``counts`` (label value, or tuple of them → count); the
    ``known`` label values show 0 until something is counted."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key in sorted({*known, *counts}):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], counts.get(key, 0))
    return family


def gauges(
    name: str, doc: str, label: str, values: dict[str, int], known: Iterable[str]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key in sorted({*known, *values}):
        family.add_metric([key], values.get(key, 0))
    return family


class PlatformFigures(Collector):
    """The figures of the app's components (reached through their slots: none before
    start-up); ``refresh`` reads the database's counts, which ``collect`` cannot (it is
    synchronous)."""

    def __init__(self, app: Starlette, cache_s: float = DB_CACHE_S) -> None:
        self.app = app
        self.cache_s = cache_s
        self._fleet: FleetCounts | None = None
        self._read_at = -math.inf
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the fleet-wide counts again when they are older than ``cache_s``; on a
        failure the last ones stay (a scrape never fails for the database)."""
        sessionmaker = SESSIONMAKER.get(self.app)
        if sessionmaker is None or time.monotonic() - self._read_at < self.cache_s:
            return
        async with self._lock:
            if time.monotonic() - self._read_at < self.cache_s:
                return
            try:
                async with sessionmaker() as session:
                    self._fleet = await SystemRepository(session).counts()
            except Exception as exc:
                if not outages.record(exc, "reading the fleet counts for /metrics"):
                    log.exception("reading the fleet counts for /metrics failed")
            self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest()
        yield from self._delivery()
        yield from self._sessions()
        yield from self._fleet_counts()

    def _ingest(self) -> Iterator[Metric]:
        ingest, hub = INGEST.get(self.app), HUB.get(self.app)
        yield counter(
            "fieldwatch_ingest_readings",
            "Readings received, by transport and outcome (accepted: stored; duplicate: "
            "stored before; refused: by the rules; overloaded: write path saturated)",
            ["transport", "outcome"],
            ingest.counts if ingest else Counter(),
            [(t, o) for t in TRANSPORTS for o in OUTCOMES],
        )
        if hub is not None:
            writer = hub.writer
            yield writer.batches.family(
                "fieldwatch_ingest_batch_readings", "Readings per group commit"
            )
            yield writer.commits.family(
                "fieldwatch_ingest_commit_seconds", "Duration of a group commit of readings"
            )
            yield GaugeMetricFamily(
                "fieldwatch_ingest_queue_readings",
                "Readings waiting for the group-commit writer (uploads get 503 above "
                "FIELDWATCH_INGEST_MAX_PENDING)",
                value=writer.pending,
            )

    def _delivery(self) -> Iterator[Metric]:
        bus, webhooks, commands = BUS.get(self.app), WEBHOOKS.get(self.app), COMMANDS.get(self.app)
        yield counter(
            "fieldwatch_event_failures",
            "Event bus failures: publish (the broker did not take an event), handler (a "
            "subscriber raised)",
            ["stage"],
            getattr(bus, "failures", {}),
            ["publish", "handler"],
        )
        yield counter(
            "fieldwatch_webhook_deliveries",
            "Webhook delivery attempts by outcome (retrying: to be sent again)",
            ["outcome"],
            webhooks.attempts if webhooks else Counter(),
            ["delivered", "retrying", "failed"],
        )
        if commands is not None:
            yield commands.delivery.family(
                "fieldwatch_command_delivery_seconds",
                "From a command's creation to its device's acknowledgement",
            )

    def _sessions(self) -> Iterator[Metric]:
        edge = EDGE.get(self.app)
        gateway = edge.mqtt if edge is not None else None
        sessions = GaugeMetricFamily(
            "fieldwatch_device_sessions", "Devices connected to this process", labels=["transport"]
        )
        sessions.add_metric(["websocket"], len(edge.sessions.sessions) if edge else 0)
        sessions.add_metric(["mqtt"], gateway.device_sessions() if gateway else 0)
        yield sessions
        realtime = getattr(self.app.state, "realtime", None)
        yield GaugeMetricFamily(
            "fieldwatch_realtime_clients",
            "Socket.IO dashboard connections to this process",
            value=realtime.connected if realtime is not None else 0,
        )
        yield counter(
            "fieldwatch_mqtt_refused",
            "MQTT messages dropped by the topic rules, by reason",
            ["reason"],
            gateway.refusals.counts if gateway else Counter(),
            REASONS,
        )
        if gateway is not None and gateway.link is not None:
            link = gateway.link
            yield GaugeMetricFamily(
                "fieldwatch_mqtt_gateway_connected",
                "1 while the gateway is connected to its broker",
                value=int(link.connected),
            )
            yield GaugeMetricFamily(
                "fieldwatch_mqtt_gateway_lag_seconds",
                "Age of the oldest received MQTT message not yet stored",
                value=link.lag(),
            )
            yield GaugeMetricFamily(
                "fieldwatch_mqtt_gateway_pending_messages",
                "MQTT messages received and waiting for the gateway",
                value=link.pending,
            )

    def _fleet_counts(self) -> Iterator[Metric]:
        fleet = self._fleet
        if fleet is None:
            return
        yield gauges(
            "fieldwatch_devices", "Devices by connectivity", "connectivity", fleet.devices,
            ("online", "offline"),
        )  # fmt: skip
        yield gauges("fieldwatch_commands", "Commands by status", "status", fleet.commands, STATES)
        yield gauges(
            "fieldwatch_alerts_open", "Active alerts by severity", "severity", fleet.alerts_open,
            get_args(Severity),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "fieldwatch_webhook_backlog_deliveries",
            "Webhook deliveries waiting to be sent or sent again",
            value=fleet.webhook_backlog,
        )


FIGURES: Slot[PlatformFigures] = Slot("figures")
FiguresDep = Annotated[PlatformFigures, Depends(FIGURES)]
