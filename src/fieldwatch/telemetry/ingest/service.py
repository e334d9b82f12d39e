"""Ingestion: the one way in for readings, whatever transport brought them.

The HTTP device API and the WebSocket and MQTT gateways decode what they receive into
readings (``parse``), and vendor-cloud syncs normalise what they fetch; all wrap them
in an ``Incoming`` batch and call ``ingest`` on the
process's one ``TelemetryService`` (``Runtime.ingest``). There, once for all of them:

- the refusal rules: readings of a device that is not in the workspace, that is retired,
  or that is not the writer's own (a device credential writes its own data only);
- the time window: nothing more than 5 minutes ahead, nothing before the workspace's
  retention;
- series found or created, up to the per-device limit on distinct metrics;
- the write through the group-commit writer, deduplicated on (device, metric, time);
- alerts; presence, each device marked seen once (a heartbeat or a status message even
  when none of its readings is stored); latest values; ``telemetry.received`` events.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any, Literal

from fieldwatch.alerts.engine import AlertEngine
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event, EventBus
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.telemetry.errors import NotOwnDevice, ReadingsRefused, UnknownDevice
from fieldwatch.telemetry.hub import SeriesInfo, TelemetryHub
from fieldwatch.telemetry.ingest.batch import Batch
from fieldwatch.telemetry.ingest.parse import FUTURE_TOLERANCE, SeriesUpload
from fieldwatch.telemetry.ingest.store import Chunk
from fieldwatch.telemetry.ingest.writer import Overloaded
from fieldwatch.telemetry.query.latest import entry as latest_entry
from fieldwatch.telemetry.storage.repository import TelemetryRepository
from fieldwatch.telemetry.storage.rollup import Row
from fieldwatch.telemetry.storage.series import kind_of, resolve_series

log = logging.getLogger(__name__)

TELEMETRY_RECEIVED = "telemetry.received"

#: Lifecycle rule for incoming readings. Retired devices are refused (their credentials
#: are revoked and their data would only confuse); every other status is accepted:
#: deployed devices are the point, devices in maintenance are often being tested, and
#: in-stock or reserved devices send data while being provisioned on the bench.
#: Only deployed devices raise alerts.
REFUSED_STATUSES = {DeviceStatus.retired.value: "device is retired"}
UNKNOWN = "unknown device"
NOT_OWN = "a device token may only write its own device's data"

#: How readings came in: a device transport, or a sync from a vendor cloud.
Source = Literal["http", "websocket", "mqtt", "sync"]
Kind = Literal["data", "heartbeat", "status"]
#: What became of readings, as counted (``TelemetryService.counts``): stored, already
#: stored, refused by the rules (one by one or with their whole request), or not taken
#: because the write path was saturated.
OUTCOMES = ("accepted", "duplicate", "refused", "overloaded")

#: The newest reading of each series a request wrote: device → metric → (ts, value,
#: series, quality).
Latest = dict[uuid.UUID, dict[str, tuple[datetime, Any, SeriesInfo, int | None]]]
#: Numeric readings per device and metric, for the alert engine.
Readings = dict[uuid.UUID, dict[str, list[tuple[datetime, float]]]]


@dataclass(slots=True)
class Incoming:
    """What a transport received for one workspace.

    ``device_id``: the one device everything comes from (an upload, a frame, a
    heartbeat), refused whole when that device may not send (``telemetry.errors``); None
    for a batch of several devices' items (a gateway's upload, an MQTT batch: see
    ``Batch.owners``), refused item by item. ``kind``: a heartbeat or a status message
    marks its device seen even when none of its readings is stored. ``heard``: the
    devices of a batch heard from, whatever they sent, with the reason presence records.
    ``own``: the device whose credential wrote it (its own data only)."""

    workspace_id: uuid.UUID
    readings: Batch | SeriesUpload
    source: Source
    kind: Kind = "data"
    device_id: uuid.UUID | None = None
    own: uuid.UUID | None = None
    heard: dict[uuid.UUID, str] = field(default_factory=dict)

    def seen(self) -> dict[uuid.UUID, str]:
        """The devices marked seen whatever is stored, with the reason."""
        if self.device_id is not None and self.kind != "data":
            return {self.device_id: self.kind, **self.heard}
        return self.heard


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": sorted(self.rejected, key=lambda r: r["index"]),
        }


class TelemetryService:
    """The entry point, one per process: it keeps no request's state, and works in short
    transactions of its own (series, the writer's, presence, alerts), so no caller holds
    a pooled connection while it waits."""

    def __init__(
        self, hub: TelemetryHub, presence: PresenceTracker, bus: EventBus, alerts: AlertEngine
    ) -> None:
        self.hub = hub
        self.presence = presence
        self.bus = bus
        self.alerts = alerts
        #: (transport, outcome) → readings, for the metrics (no per-device figures).
        self.counts: Counter[tuple[str, str]] = Counter()

    async def ingest(self, incoming: Incoming) -> IngestResult:
        """Store what ``incoming`` holds, by the rules above. Raises ``telemetry.errors``
        for a single device that may not send, ``writer.Overloaded`` when the write path
        is saturated."""
        source, counts = incoming.source, self.counts
        try:
            result = await self._ingest(incoming)
        except (UnknownDevice, ReadingsRefused, NotOwnDevice):
            counts[(source, "refused")] += _size(incoming.readings)
            raise
        except Overloaded:
            counts[(source, "overloaded")] += _size(incoming.readings)
            raise
        counts[(source, "accepted")] += result.accepted
        counts[(source, "duplicate")] += result.duplicates
        counts[(source, "refused")] += len(result.rejected)
        return result

    async def _ingest(self, incoming: Incoming) -> IngestResult:
        refused = await self._refused(incoming)
        workspace_id, readings = incoming.workspace_id, incoming.readings
        if isinstance(readings, SeriesUpload):
            result, latest = await self._upload(workspace_id, readings)
        else:
            readings.refuse(refused)
            result, latest = await self._batch(workspace_id, readings)
        await self._mark_seen(incoming, latest, refused)
        await self._publish(workspace_id, latest)
        if result.rejected:
            log.debug("%s: %d readings rejected", incoming.source, len(result.rejected))
        return result

    # --- the refusal rules --------------------------------------------------------------

    async def _refused(self, incoming: Incoming) -> dict[uuid.UUID, str]:
        """The devices of ``incoming`` whose readings are refused, with the reason; for a
        single device, its refusal raised."""
        device_id, own = incoming.device_id, incoming.own
        if device_id is not None and own is not None and device_id != own:
            raise NotOwnDevice("A device token may only write its own device's data.")
        ids = set(incoming.heard)
        if device_id is not None:
            ids.add(device_id)
        if isinstance(incoming.readings, Batch):
            ids |= incoming.readings.devices()
        refused = {d: NOT_OWN for d in ids if own is not None and d != own}
        found = await self.device_statuses(
            incoming.workspace_id, [d for d in ids if d not in refused]
        )
        for d in ids:
            if d in refused:
                continue
            if d not in found:
                refused[d] = UNKNOWN
            elif found[d][0] in REFUSED_STATUSES:
                refused[d] = REFUSED_STATUSES[found[d][0]]
        if device_id is not None and device_id in refused:
            if device_id not in found:
                raise UnknownDevice(f"No device {device_id} in this workspace.")
            raise ReadingsRefused(f"Readings refused: {refused[device_id]}.")
        return refused

    async def device_statuses(
        self, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, str]]:
        """(lifecycle status, type) of those devices that exist in the workspace (briefly
        cached; status changes evict at once)."""
        cache = self.hub.device_status
        out: dict[uuid.UUID, tuple[str, str]] = {}
        missing: list[uuid.UUID] = []
        for device_id in ids:
            hit = cache.get(device_id)
            if hit is None:
                missing.append(device_id)
            elif hit[0] == workspace_id:
                out[device_id] = (hit[1], hit[2])
        if missing:
            async with self.hub.sessionmaker() as session:
                found = await TelemetryRepository(session).devices(workspace_id, missing)
            for device_id, (status, type_) in found.items():
                cache.put(device_id, (workspace_id, status, type_))
                out[device_id] = (status, type_)
        return out

    # --- storing ------------------------------------------------------------------------

    async def _window(self, workspace_id: uuid.UUID) -> tuple[datetime, datetime]:
        """The oldest and the latest time a reading of the workspace may have."""
        now = utcnow()
        days = await self.hub.retention_days(workspace_id)
        return now - timedelta(days=days), now + FUTURE_TOLERANCE

    async def _batch(self, workspace_id: uuid.UUID, batch: Batch) -> tuple[IngestResult, Latest]:
        """The general path: readings of any kind, any devices, any order."""
        latest: Latest = defaultdict(dict)
        result = IngestResult(rejected=batch.rejected)
        if batch.candidates:
            batch.keep_within(*await self._window(workspace_id))
        if batch.candidates:
            await resolve_series(self.hub, workspace_id, batch)
        if not batch.candidates:  # none left, or all beyond the device's limit on metrics
            return result, latest
        rows: list[Row] = []
        cache = self.hub.series
        fresh = True
        oldest = newest = batch.candidates[0].ts
        # Looked up by the device id object's identity (a UUID's own hash is computed in
        # Python, on every lookup): once per series and batch, not per reading.
        infos: dict[tuple[int, str], SeriesInfo] = {}
        latest_of: dict[int, tuple[datetime, Any, SeriesInfo, int | None, uuid.UUID, str]] = {}
        for position, device_id, metric, ts, value, unit, quality in batch.candidates:
            info = infos.get((id(device_id), metric))
            if info is None:
                info = infos[(id(device_id), metric)] = cache[(device_id, metric)]
            kind = "number" if value.__class__ is float else kind_of(value)
            if kind != info.kind:
                batch.reject(position, f"{metric} holds {info.kind} values, not {kind}", metric)
                continue
            if unit is not None and unit != info.unit:
                if info.unit is not None:
                    batch.reject(position, f"{metric} is in {info.unit!r}, not {unit!r}", metric)
                    continue
                await self._adopt_unit(info, unit)
            if kind == "text":
                rows.append((info.id, ts, None, value, quality))  # type: ignore[arg-type]
            else:
                rows.append((info.id, ts, float(value), None, quality))
            if info.newest is not None and ts <= info.newest:
                fresh = False
            if ts < oldest:
                oldest = ts
            elif ts > newest:
                newest = ts
            seen = latest_of.get(id(info))
            if seen is None or ts > seen[0]:
                latest_of[id(info)] = (ts, value, info, quality, device_id, metric)
        for ts, value, info, quality, device_id, metric in latest_of.values():
            latest[device_id][metric] = (ts, value, info, quality)
        if rows:
            await self._write(Chunk(rows, oldest, newest, fresh), latest, result)
        if self.alerts.has_rules(workspace_id) is not False:
            readings: Readings = defaultdict(lambda: defaultdict(list))
            for _p, device_id, metric, ts, value, _unit, _q in batch.candidates:
                if not isinstance(value, str):
                    readings[device_id][metric].append((ts, float(value)))
            await self._evaluate_alerts(workspace_id, readings)
        return result, latest

    async def _upload(
        self, workspace_id: uuid.UUID, upload: SeriesUpload
    ) -> tuple[IngestResult, Latest]:
        """The commonest upload, one device's numbers for one metric, without per-reading
        work in Python; anything out of the ordinary takes the general path."""
        oldest, latest_allowed = await self._window(workspace_id)
        within = upload.oldest >= oldest and upload.newest <= latest_allowed
        info = self.hub.series.get((upload.device_id, upload.metric)) if within else None
        if info is None or info.kind != "number" or upload.units is not None or (
            upload.unit is not None and upload.unit != info.unit
        ):  # fmt: skip
            # New series, another kind or unit, mixed units, out-of-window readings:
            # the general path creates, adopts or explains.
            return await self._batch(workspace_id, upload.batch())
        qualities = upload.qualities or repeat(None)
        rows = list(zip(repeat(info.id), upload.stamps, upload.values, repeat(None), qualities))
        fresh = info.newest is None or upload.oldest > info.newest
        newest = upload.stamps.index(upload.newest)
        quality = upload.qualities[newest] if upload.qualities else None
        latest: Latest = {
            upload.device_id: {upload.metric: (upload.newest, upload.values[newest], info, quality)}
        }
        result = IngestResult()
        await self._write(Chunk(rows, upload.oldest, upload.newest, fresh), latest, result)
        if self.alerts.has_rules(workspace_id) is not False:
            pairs = list(zip(upload.stamps, upload.values, strict=True))
            await self._evaluate_alerts(workspace_id, {upload.device_id: {upload.metric: pairs}})
        return result, latest

    async def _write(self, chunk: Chunk, latest: Latest, result: IngestResult) -> None:
        written = await self.hub.writer.write(chunk)
        result.accepted, result.duplicates = written.accepted, written.duplicates
        # What is stored now reaches at least this far: later uploads of these series
        # that are all newer can take the writer's fast path.
        for metrics in latest.values():
            for ts, _value, info, _quality in metrics.values():
                if info.newest is None or ts > info.newest:
                    info.newest = ts

    async def _adopt_unit(self, info: SeriesInfo, unit: str) -> None:
        async with self.hub.sessionmaker() as session:
            await TelemetryRepository(session).set_unit(info.id, unit)
            await session.commit()
        info.unit = unit

    # --- what follows a write -----------------------------------------------------------

    async def _evaluate_alerts(self, workspace_id: uuid.UUID, readings: Readings) -> None:
        if readings:
            devices = await self.device_statuses(workspace_id, list(readings))
            await self.alerts.evaluate(workspace_id, readings, devices)

    async def _mark_seen(
        self, incoming: Incoming, latest: Latest, refused: dict[uuid.UUID, str]
    ) -> None:
        """Presence, once per device: those whose readings were stored, and those heard
        from whatever was stored (unless refused), each with its reason."""
        reasons = dict.fromkeys(latest, "data")
        reasons.update((d, r) for d, r in incoming.seen().items() if d not in refused)
        by_reason: dict[str, list[uuid.UUID]] = defaultdict(list)
        for device_id, reason in reasons.items():
            by_reason[reason].append(device_id)
        for reason, devices in by_reason.items():
            await self.presence.seen(incoming.workspace_id, devices, reason)

    async def _publish(self, workspace_id: uuid.UUID, latest: Latest) -> None:
        """Latest values and events for what was stored (one event per device)."""
        if not latest:
            return
        record, shown = self.hub.latest.record, []
        for device_id, metrics in latest.items():
            device, values = str(device_id), {}
            for metric, (ts, value, info, quality) in metrics.items():
                kind = info.kind
                text = value if kind == "text" else None
                number = None if kind == "text" else float(value)
                made = latest_entry(kind, info.unit, ts, number, text, quality)
                record(workspace_id, device, metric, made)
                values[metric] = {"timestamp": made[1]["timestamp"], "value": value}
            shown.append((device_id, {"device_id": device, "metrics": values}))
        await self.hub.latest.flush()  # with Redis: one round trip for the whole request
        publish = self.bus.publish
        for device_id, payload in shown:
            await publish(Event(TELEMETRY_RECEIVED, workspace_id, payload, device_id))


def _size(readings: Batch | SeriesUpload) -> int:
    return readings.total if isinstance(readings, Batch) else len(readings)
