"""The console's device page: the telemetry section (loaded into the page by htmx).

``GET /console/devices/{id}/charts`` is the section: the range picker, the time zone,
the pause of live updates, a chart per numeric metric and the same points as tables
(``static/console/charts.js`` draws them with uPlot). ``GET …/series`` is what the
charts fetch: one metric over a range, raw readings when the range holds few enough,
else the aggregate API's averages over the finest interval that keeps a series within
``MAX_POINTS`` points (``telemetry.query.chart``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from fieldwatch.console.pages import NO_STORE, Viewer, render
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import NotFound, ValidationFailed
from fieldwatch.db.dependencies import UowDep
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.privacy.service import health_devices, record_reads
from fieldwatch.integrations.schemas import HealthMetricRead, health_metrics
from fieldwatch.telemetry.dependencies import TelemetryDep
from fieldwatch.telemetry.models import Series
from fieldwatch.telemetry.query.buckets import parse_timezone
from fieldwatch.telemetry.query.chart import MAX_POINTS, ChartSeries, chart_series

router = APIRouter(include_in_schema=False)

#: The range picker's choices: label → length.
RangeKey = Literal["1h", "24h", "7d", "30d"]
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "1h"
#: The fewest points a chart may ask for (its width in pixels, on a narrow phone).
MIN_POINTS = 100
#: The longest range a chart is asked for (a custom one): ten years.
LONGEST = timedelta(days=3660)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str | None
    kind: str  # number | bool
    #: The health metric it is, on a health device (its LOINC code and UCUM unit).
    health: HealthMetricRead | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


def chartable(series: list[Series], health: bool = False) -> tuple[list[Metric], list[str]]:
    """The metrics drawn as charts (numbers and booleans) and those that are not (text);
    ``health``: the device's data is health data (its health metrics are described)."""
    described = health_metrics(s.metric for s in series) if health else {}
    charts = [Metric(s.metric, s.unit, s.kind, described.get(s.metric))
              for s in series if s.kind != "text"]  # fmt: skip
    return charts, [s.metric for s in series if s.kind == "text"]


@router.get("/console/devices/{device_id}/charts")
async def charts_section(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep, telemetry: TelemetryDep
) -> Response:
    device = await DeviceService(uow).get(user.principal, device_id)
    health = bool(await health_devices(uow, user.principal, [device.id]))
    metrics, text = chartable(list(await telemetry.series(device.id, None)), health)
    context = {
        "device": device,
        "metrics": metrics,
        "text_metrics": text,
        "ranges": list(RANGES),
        "default_range": DEFAULT_RANGE,
        "max_points": MAX_POINTS,
    }
    return render(request, "_device_charts.html", context)


def _instant(text: str | None, field: str, zone: ZoneInfo) -> datetime | None:
    """An ISO 8601 time; one without an offset is a wall-clock time in ``zone``."""
    if text is None or not text.strip():
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        message = "not a date and time (ISO 8601, e.g. 2026-11-22T10:00)"
        raise ValidationFailed(
            f"{field}: {message}.", errors=[{"field": field, "message": message}]
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _window(
    start_text: str | None, end_text: str | None, last: str | None, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """``[from, to)``: ``last`` (a range picker choice) ending now, else the given times
    (``to`` defaults to now, ``from`` to the default range before it)."""
    if last is not None:
        end = utcnow()
        return end - RANGES[last], end
    end = _instant(end_text, "to", zone) or utcnow()
    start = _instant(start_text, "from", zone) or end - RANGES[DEFAULT_RANGE]
    if start >= end:
        message = "the start must be before the end"
        raise ValidationFailed(
            "The start of the range must be before its end.",
            errors=[{"field": "from", "message": message}],
        )
    if end - start > LONGEST:
        message = f"at most {LONGEST.days} days"
        raise ValidationFailed(
            f"The range is too long: {message}.", errors=[{"field": "from", "message": message}]
        )
    return start, end


def _epoch(values: list[datetime]) -> list[float]:
    return [round(t.timestamp(), 3) for t in values]


def series_body(metric: Metric, chart: ChartSeries) -> dict[str, Any]:
    """What a chart draws: columns of epoch seconds and values (uPlot's shape)."""
    body: dict[str, Any] = {
        "metric": metric.name,
        "unit": metric.unit,
        "kind": metric.kind,
        "label": metric.label,
        "loinc": metric.health.loinc if metric.health else None,
        "title": metric.health.title if metric.health else None,
        "interval": None if chart.interval is None else chart.interval.label,
        "step": None if chart.interval is None else chart.interval.fixed_seconds,
        "sources": chart.sources,
        "points": sum(v is not None for v in chart.values),
        "t": _epoch(chart.times),
        "v": chart.values,
    }
    if chart.interval is not None:
        body |= {"lo": chart.lows, "hi": chart.highs, "n": chart.counts}
    return body


@router.get("/console/devices/{device_id}/series")
async def device_series(
    device_id: uuid.UUID,
    user: Viewer,
    uow: UowDep,
    telemetry: TelemetryDep,
    metric: Annotated[list[str] | None, Query(max_length=100)] = None,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    last: Annotated[RangeKey | None, Query()] = None,
    tz: Annotated[str, Query(max_length=64)] = "UTC",
    points: Annotated[int, Query(ge=MIN_POINTS, le=MAX_POINTS)] = MAX_POINTS,
) -> Response:
    """The device's numeric metrics (those named by ``metric``, which may repeat; else
    all) over ``[from, to)`` or the ``last`` hour/day/week/month (default: the last 24
    hours), each sized for a chart: at most ``points`` points (the chart's width in
    pixels: more could not be told apart). ``from``/``to`` without an offset are
    wall-clock times in ``tz``, the zone the buckets follow. One request for all the
    charts of the page: the session and the device are checked once. The read of a
    health device's readings is recorded in the access log."""
    device = await DeviceService(uow).get(user.principal, device_id)
    try:
        zone = parse_timezone(tz)
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "tz", "message": str(exc)}]) from exc
    window = _window(start, end, last, zone)
    wanted = set(metric or ())
    series = [s for s in await telemetry.series(device.id, None)
              if s.kind != "text" and (not wanted or s.metric in wanted)]  # fmt: skip
    if wanted and not series:
        names = ", ".join(repr(m) for m in sorted(wanted))
        raise NotFound(f"The device has no numeric readings of {names}.")
    charts = [await chart_series(telemetry.repo, s, *window, zone, points) for s in series]
    what = "console chart " + ", ".join(s.metric for s in series)
    health = await record_reads(uow, user.principal, [device.id], what) if series else set()
    metrics, _ = chartable(series, bool(health))
    body = {
        "from": round(window[0].timestamp(), 3),
        "to": round(window[1].timestamp(), 3),
        "tz": tz,
        "series": [series_body(m, c) for m, c in zip(metrics, charts, strict=True)],
    }
    return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)
