"""Reading telemetry back: series, pages of raw readings, deletes, retention settings."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fieldwatch.core.errors import BadRequest, ValidationFailed
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.telemetry.hub import TelemetryHub
from fieldwatch.telemetry.ingest.parse import QUALITY_NAMES
from fieldwatch.telemetry.models import Series
from fieldwatch.telemetry.storage.repository import TelemetryRepository


class TelemetryQueries:
    """Per request: reads (and deletes) in the request's unit of work."""

    def __init__(self, uow: UnitOfWork, hub: TelemetryHub) -> None:
        self.hub = hub
        self.repo = TelemetryRepository(uow.session)

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
