"""Telemetry rules: who may write what, turning readings into rows, and queries."""

from __future__ import annotations

import base64
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

from fieldwatch.alerts.engine import AlertEngine
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import BadRequest, ValidationFailed
from fieldwatch.core.events import Event, EventBus
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.monitoring.presence import PresenceTracker
from fieldwatch.telemetry.hub import SeriesInfo, TelemetryHub
from fieldwatch.telemetry.latest import entry as latest_entry
from fieldwatch.telemetry.models import Series
from fieldwatch.telemetry.parse import (
    FUTURE_TOLERANCE,
    QUALITY_NAMES,
    Batch,
    SeriesUpload,
    check_time_window,
)
from fieldwatch.telemetry.repository import TelemetryRepository
from fieldwatch.telemetry.rollup import Row
from fieldwatch.telemetry.series import kind_of, resolve_series
from fieldwatch.telemetry.store import Chunk
from fieldwatch.telemetry.writer import WriteResult

log = logging.getLogger(__name__)

TELEMETRY_RECEIVED = "telemetry.received"

#: Lifecycle rule for incoming readings. Retired devices are refused (their credentials
#: are revoked and their data would only confuse); every other status is accepted:
#: deployed devices are the point, devices in maintenance are often being tested, and
#: in-stock or reserved devices send data while being provisioned on the bench.
#: Only deployed devices raise alerts.
REFUSED_STATUSES = {DeviceStatus.retired.value: "device is retired"}


#: The newest reading of each series a request wrote: device → metric → (ts, value,
#: series, quality).
Latest = dict[uuid.UUID, dict[str, tuple[datetime, Any, SeriesInfo, int | None]]]
#: Numeric readings per device and metric, for the alert engine.
Readings = dict[uuid.UUID, dict[str, list[tuple[datetime, float]]]]


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
    def __init__(
        self,
        uow: UnitOfWork,
        hub: TelemetryHub,
        presence: PresenceTracker,
        bus: EventBus,
        alerts: AlertEngine | None = None,
    ) -> None:
        self.alerts = alerts
        self.uow = uow
        self.hub = hub
        self.presence = presence
        self.bus = bus
        self.repo = TelemetryRepository(uow.session)

    # --- ingestion ------------------------------------------------------------------

    async def check_devices(
        self, workspace_id: uuid.UUID, raw_ids: Sequence[Any], only: uuid.UUID | None = None
    ) -> dict[str, uuid.UUID | str]:
        """Map each raw device id of a gateway batch to its UUID, or to the reason its
        readings are refused."""
        parsed: dict[str, uuid.UUID | str] = {}
        for raw in raw_ids:
            try:
                parsed[str(raw)] = uuid.UUID(str(raw))
            except ValueError:
                parsed[str(raw)] = "unknown device"
        refused = await self.refused(
            workspace_id, [v for v in parsed.values() if isinstance(v, uuid.UUID)]
        )
        for raw, value in parsed.items():
            if not isinstance(value, uuid.UUID):
                continue
            if only is not None and value != only:
                parsed[raw] = "a device token may only write its own device's data"
            elif value in refused:
                parsed[raw] = refused[value]
        return parsed

    async def refused(
        self, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """Those of these devices whose readings are refused, with the reason: not in
        the workspace, or in a refused lifecycle status."""
        found = await self.device_statuses(workspace_id, ids)
        out: dict[uuid.UUID, str] = {}
        for device_id in ids:
            if device_id not in found:
                out[device_id] = "unknown device"
            elif found[device_id][0] in REFUSED_STATUSES:
                out[device_id] = REFUSED_STATUSES[found[device_id][0]]
        return out

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
            # A short session of its own: this also runs after the request's session has
            # given its connection back (see ingest).
            async with self.hub.sessionmaker() as session:
                found = await TelemetryRepository(session).devices(workspace_id, missing)
            for device_id, (status, type_) in found.items():
                cache.put(device_id, (workspace_id, status, type_))
                out[device_id] = (status, type_)
        return out

    async def device_status(self, workspace_id: uuid.UUID, device_id: uuid.UUID) -> str | None:
        found = (await self.device_statuses(workspace_id, [device_id])).get(device_id)
        return found[0] if found else None

    def refusal(self, status: str) -> str | None:
        return REFUSED_STATUSES.get(status)

    async def ingest(
        self, workspace_id: uuid.UUID, batch: Batch, *, reason: str = "data"
    ) -> IngestResult:
        now = utcnow()
        days = await self._retention_and_release(workspace_id)
        check_time_window(batch, now, now - timedelta(days=days))
        result = IngestResult(rejected=batch.rejected)
        if not batch.candidates:
            return result
        await resolve_series(self.hub, workspace_id, batch)
        if not batch.candidates:  # all beyond the device's limit on distinct metrics
            return result
        rows: list[Row] = []
        latest: Latest = defaultdict(dict)
        cache = self.hub.series
        fresh = True
        oldest = newest = batch.candidates[0][3]
        for index, device_id, metric, ts, value, unit, quality in batch.candidates:
            info = cache[(device_id, metric)]
            kind = kind_of(value)
            if kind != info.kind:
                batch.reject(index, f"{metric} holds {info.kind} values, not {kind}", metric)
                continue
            if unit is not None and unit != info.unit:
                if info.unit is not None:
                    batch.reject(index, f"{metric} is in {info.unit!r}, not {unit!r}", metric)
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
            seen = latest[device_id].get(metric)
            if seen is None or ts > seen[0]:
                latest[device_id][metric] = (ts, value, info, quality)
        if rows:
            written = await self._write(Chunk(rows, oldest, newest, fresh), latest)
            result.accepted, result.duplicates = written.accepted, written.duplicates
        if self.alerts is not None and self.alerts.has_rules(workspace_id) is not False:
            readings: Readings = defaultdict(lambda: defaultdict(list))
            for _i, device_id, metric, ts, value, _unit, _q in batch.candidates:
                if not isinstance(value, str):
                    readings[device_id][metric].append((ts, float(value)))
            await self._evaluate_alerts(workspace_id, readings)
        await self._after_write(workspace_id, latest, reason)
        return result

    async def ingest_series(
        self, workspace_id: uuid.UUID, upload: SeriesUpload, *, reason: str = "data"
    ) -> IngestResult:
        """The commonest upload, one device's numbers for one metric, without per-reading
        work in Python; anything out of the ordinary goes through ``ingest``."""
        now = utcnow()
        days = await self._retention_and_release(workspace_id)
        within = (
            upload.oldest >= now - timedelta(days=days) and upload.newest <= now + FUTURE_TOLERANCE
        )
        info = self.hub.series.get((upload.device_id, upload.metric)) if within else None
        if info is None or info.kind != "number" or upload.units is not None or (
            upload.unit is not None and upload.unit != info.unit
        ):  # fmt: skip
            # New series, another kind or unit, mixed units, out-of-window readings:
            # the general path creates, adopts or explains.
            return await self.ingest(workspace_id, upload.batch(), reason=reason)
        qualities = upload.qualities or repeat(None)
        rows = list(zip(repeat(info.id), upload.stamps, upload.values, repeat(None), qualities))
        fresh = info.newest is None or upload.oldest > info.newest
        newest = upload.stamps.index(upload.newest)
        quality = upload.qualities[newest] if upload.qualities else None
        latest: Latest = {
            upload.device_id: {upload.metric: (upload.newest, upload.values[newest], info, quality)}
        }
        written = await self._write(Chunk(rows, upload.oldest, upload.newest, fresh), latest)
        if self.alerts is not None and self.alerts.has_rules(workspace_id) is not False:
            pairs = list(zip(upload.stamps, upload.values, strict=True))
            await self._evaluate_alerts(workspace_id, {upload.device_id: {upload.metric: pairs}})
        await self._after_write(workspace_id, latest, reason)
        return IngestResult(written.accepted, written.duplicates)

    async def _retention_and_release(self, workspace_id: uuid.UUID) -> int:
        days = await self.hub.retention_days(workspace_id, self.uow.session)
        # From here on everything happens in other transactions (series creation, the
        # writer, presence, alerts): do not sit on a pooled connection meanwhile.
        await self.uow.release()
        return days

    async def _write(self, chunk: Chunk, latest: Latest) -> WriteResult:
        written = await self.hub.writer.write(chunk)
        # What is stored now reaches at least this far: later uploads of these series
        # that are all newer can take the writer's fast path.
        for metrics in latest.values():
            for ts, _value, info, _quality in metrics.values():
                if info.newest is None or ts > info.newest:
                    info.newest = ts
        return written

    async def _after_write(self, workspace_id: uuid.UUID, latest: Latest, reason: str) -> None:
        """Presence, latest values and events for what a request stored."""
        await self.presence.seen(workspace_id, latest.keys(), reason)
        for device_id, metrics in latest.items():
            for metric, (ts, value, info, quality) in metrics.items():
                text = value if info.kind == "text" else None
                number = None if info.kind == "text" else float(value)
                self.hub.latest.record(
                    workspace_id, device_id, metric,
                    latest_entry(info.kind, info.unit, ts, number, text, quality),
                )  # fmt: skip
        await self.hub.latest.flush()  # with Redis: one round trip for the whole request
        for device_id, metrics in latest.items():
            await self.bus.publish(
                Event(
                    type=TELEMETRY_RECEIVED,
                    workspace_id=workspace_id,
                    subject_id=device_id,
                    payload={
                        "device_id": str(device_id),
                        "metrics": {
                            m: {"timestamp": t.isoformat(), "value": v}
                            for m, (t, v, _info, _q) in metrics.items()
                        },
                    },
                )
            )

    async def _evaluate_alerts(self, workspace_id: uuid.UUID, readings: Readings) -> None:
        assert self.alerts is not None
        if readings:
            devices = await self.device_statuses(workspace_id, list(readings))
            await self.alerts.evaluate(workspace_id, readings, devices)

    async def _adopt_unit(self, info: SeriesInfo, unit: str) -> None:
        async with self.hub.sessionmaker() as session:
            await TelemetryRepository(session).set_unit(info.id, unit)
            await session.commit()
        info.unit = unit

    # --- queries ----------------------------------------------------------------------

    async def series(self, device_id: uuid.UUID, metric: str | None) -> Sequence[Series]:
        return await self.repo.device_series(device_id, metric)

    async def readings_page(
        self,
        series: Sequence[Series],
        *,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        descending: bool,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = decode_cursor(cursor) if cursor else None
        by_id = {s.id: s for s in series}
        if not by_id:
            return [], None
        rows = await self.repo.readings(
            series, start=start, end=end, limit=limit, descending=descending, after=after
        )
        items = [
            reading_dict(by_id[r.series_id], r.ts, r.value, r.text_value, r.quality)
            | {"device_id": by_id[r.series_id].device_id}
            for r in rows
        ]
        next_cursor = encode_cursor(rows[-1].ts, rows[-1].series_id) if len(rows) == limit else None
        return items, next_cursor

    async def delete(
        self, series: Sequence[Series], start: datetime | None, end: datetime | None
    ) -> int:
        ids = [s.id for s in series]
        if not ids:
            return 0
        deleted = await self.repo.delete_readings(ids, start, end)
        await self.repo.rebuild_rollups(ids, start, end)
        return deleted


def reading_dict(
    series: Series, ts: datetime, value: float | None, text: str | None, quality: int | None
) -> dict[str, Any]:
    out: Any
    if series.kind == "text":
        out = text
    elif series.kind == "bool":
        out = None if value is None else bool(value)
    else:
        out = value
    return {
        "data_type": series.metric,
        "timestamp": ts,
        "value": out,
        "unit": series.unit,
        "quality": QUALITY_NAMES.get(quality) if quality is not None else None,
    }


def encode_cursor(ts: datetime, series_id: int) -> str:
    raw = f"{ts.isoformat()}|{series_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, sid = raw.split("|")
        return datetime.fromisoformat(ts), int(sid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "Invalid cursor.", errors=[{"field": "cursor", "message": "not a cursor from us"}]
        ) from exc


def require_range(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start_time", start), ("end_time", end)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                f"{name} needs a timezone (e.g. Z).",
                errors=[{"field": name, "message": "give a timezone, e.g. 2026-11-22T10:00:00Z"}],
            )
    if start is not None and end is not None and start >= end:
        raise BadRequest("start_time must be before end_time.")
