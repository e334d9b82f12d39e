"""Turning what devices send into readings, fast: no per-reading model objects.

Every transport decodes here: JSON as devices write it (``decode_json``), the upload
shapes of the HTTP API, and the messages of the WebSocket and MQTT gateways
(``device_message``). The hot path is plain Python over the decoded JSON: each reading
becomes a ``Candidate`` of a ``Batch``; anything wrong with one reading becomes
``{index, reason}`` (plus ``metric`` where useful) and never stops the others.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

import msgspec
import orjson

from fieldwatch.telemetry.ingest.batch import Batch, Candidate

#: Reading quality codes (stored as a small integer).
QUALITY = {"good": 0, "fair": 1, "poor": 2, "bad": 3, "estimated": 4, "unknown": 5}
QUALITY_NAMES = {v: k for k, v in QUALITY.items()}
MAX_METRIC = 100
MAX_TEXT = 1024
MAX_UNIT = 32
FUTURE_TOLERANCE = timedelta(minutes=5)
HEARTBEAT_FIELDS = ("battery_level", "signal_strength", "memory_usage", "cpu_usage")
BAD_TIMESTAMP = "timestamp must be an ISO 8601 string or epoch seconds"


def decode_json(raw: bytes | str) -> Any:
    """JSON; ``ValueError`` when malformed. NaN and Infinity are not JSON, but common
    device firmware sends them: they are read, so those readings are refused one by one."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise ValueError(f"Malformed JSON: {exc}") from exc


class NotAnObject(ValueError):
    """The JSON is well formed but not an object."""


def decode_message(raw: bytes) -> dict[str, Any]:
    """A device message's JSON object (MQTT); an empty payload is ``{}``. Strict:
    ``ValueError`` when malformed (NaN and Infinity included), ``NotAnObject`` when the
    JSON is not an object."""
    if not raw:
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"Malformed JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise NotAnObject("not a JSON object")
    return payload


def read_body(raw: bytes) -> Any:
    """A request body's JSON (``decode_json``); an empty body is None."""
    return decode_json(raw) if raw.strip() else None


def timestamp(batch: Batch, raw: Any) -> datetime | str:
    """A UTC datetime, or the reason it is not one. Cached: batches repeat stamps."""
    try:
        hit = batch.stamps.get(raw)
    except TypeError:
        return BAD_TIMESTAMP
    if hit is None:
        hit = _parse_ts(raw)
        batch.stamps[raw] = hit
    return hit


def _parse_ts(raw: Any) -> datetime | str:
    if isinstance(raw, bool):
        return BAD_TIMESTAMP
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or not 0 <= raw < 32503680000:
            return "timestamp out of range"
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            return f"not a timestamp: {raw[:40]!r}"
        if ts.tzinfo is UTC:  # "…Z" / "…+00:00": the common case, nothing to convert
            return ts
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return BAD_TIMESTAMP


def _value(raw: Any) -> float | bool | str | None:
    """The stored value, or None when the type is not accepted."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        f = float(raw)
        return f if math.isfinite(f) else None
    if isinstance(raw, str) and len(raw) <= MAX_TEXT:
        return raw
    return None


def _value_problem(raw: Any) -> str:
    if isinstance(raw, float) and not math.isfinite(raw):
        return "value must be a finite number (no NaN or infinity)"
    if isinstance(raw, str):
        return f"text values are at most {MAX_TEXT} characters"
    if raw is None:
        return "value is missing"
    return f"value must be a number, boolean or string, not {type(raw).__name__}"


def add_reading(
    batch: Batch,
    index: int,
    device_id: uuid.UUID,
    metric: Any,
    raw_value: Any,
    raw_ts: Any,
    unit: Any = None,
    quality: Any = None,
    *,
    name_metric: bool = False,
) -> None:
    """Validate one reading and add it to the batch (or record why not)."""
    batch.total += 1
    label = metric if name_metric and isinstance(metric, str) else None
    if not isinstance(metric, str) or not metric or len(metric) > MAX_METRIC:
        batch.reject(index, f"metric name must be 1–{MAX_METRIC} characters", label)
        return
    value = _value(raw_value)
    if value is None:
        batch.reject(index, _value_problem(raw_value), label)
        return
    ts = timestamp(batch, raw_ts)
    if isinstance(ts, str):
        batch.reject(index, ts, label)
        return
    if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_UNIT):
        batch.reject(index, f"unit must be a string of at most {MAX_UNIT} characters", label)
        return
    q: int | None = None
    if quality is not None:
        q = QUALITY.get(quality) if isinstance(quality, str) else None
        if q is None:
            batch.reject(index, f"quality must be one of {', '.join(QUALITY)}", label)
            return
    batch.candidates.append(Candidate(index, device_id, metric, ts, value, unit or None, q))


def parse_device_data(body: Any, device_id: uuid.UUID, now: datetime) -> Batch:
    """Seed 002: ``{data_type, timestamp, values: [{timestamp, value, unit, quality}], metadata}``;
    also a single reading ``{data_type, value, unit?, quality?, timestamp?}``. The general
    path, with a reason for every refused reading; plain uploads are decoded faster by
    ``fast_device_data``."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    metric = body.get("data_type")
    default_ts = body.get("timestamp", now.isoformat())
    batch = Batch()
    values = body.get("values")
    if values is None and "value" in body:
        values = [{k: body[k] for k in ("value", "unit", "quality", "timestamp") if k in body}]
    if not isinstance(values, list):
        raise ValueError("'values' must be a list of readings")
    for i, item in enumerate(values):
        if not isinstance(item, dict):
            batch.total += 1
            batch.reject(i, "a reading is an object with a value")
            continue
        add_reading(
            batch, i, device_id, metric, item.get("value"), item.get("timestamp", default_ts),
            item.get("unit"), item.get("quality"),
        )  # fmt: skip
    return batch


QualityName = Literal["good", "fair", "poor", "bad", "estimated", "unknown"]
_FINITE = msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)  # no ±inf (1e999)


class _Value(msgspec.Struct):
    value: Annotated[float, _FINITE]
    timestamp: datetime | None = None
    unit: Annotated[str, msgspec.Meta(max_length=MAX_UNIT)] | None = None
    quality: QualityName | None = None


class _DeviceData(msgspec.Struct):
    data_type: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_METRIC)]
    values: list[_Value]
    timestamp: datetime | None = None


_device_data = msgspec.json.Decoder(_DeviceData)


@dataclass(slots=True)
class SeriesUpload:
    """The commonest upload (seed 002: one device, one metric, numbers), kept in columns
    so that nothing has to be done per reading in Python beyond building the rows.
    Timestamps are timezone-aware, though not necessarily in UTC (the database does not
    mind); ``oldest`` and ``newest`` are UTC."""

    device_id: uuid.UUID
    metric: str
    stamps: list[datetime]
    values: list[float]
    qualities: list[int | None] | None  # None: no reading names one
    unit: str | None  # the unit every reading names, or None when none names one
    units: list[str | None] | None  # per reading, when they differ (the general path)
    oldest: datetime
    newest: datetime

    def __len__(self) -> int:
        return len(self.values)

    def batch(self) -> Batch:
        """The same readings for the general path."""
        n = len(self.values)
        units = self.units or [self.unit] * n
        qualities = self.qualities or [None] * n
        batch = Batch()
        batch.candidates = [
            Candidate(i, self.device_id, self.metric, _utc(ts), value, unit, q)
            for i, (ts, value, unit, q) in enumerate(
                zip(self.stamps, self.values, units, qualities, strict=True)
            )
        ]
        batch.total = n
        return batch


def fast_device_data(raw: bytes, device_id: uuid.UUID, now: datetime) -> SeriesUpload | None:
    """The seed 002 upload decoded and checked in C (msgspec), for the plain case: finite
    numbers, ISO 8601 timestamps, known qualities, short units. Returns None for anything
    else; the caller then takes the general path, which explains every refused reading."""
    try:
        body = _device_data.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    readings = body.values
    if not readings:
        return None
    given = [r.timestamp for r in readings]
    if None in given:
        default = _utc(body.timestamp) if body.timestamp is not None else now
        given = [default if ts is None else ts for ts in given]
    stamps = cast(list[datetime], given)
    try:
        oldest, newest = min(stamps), max(stamps)
        naive = oldest.tzinfo is None  # then all are: naive and aware do not compare
    except TypeError:
        naive = True
    if naive:  # no offset given: UTC
        stamps = [_utc(ts) for ts in stamps]
        oldest, newest = min(stamps), max(stamps)
    names = {r.quality for r in readings}
    qualities = None if names == {None} else [QUALITY.get(r.quality or "") for r in readings]
    named = {r.unit or None for r in readings}
    unit = next(iter(named)) if len(named) == 1 else None
    units = None if len(named) == 1 else [r.unit or None for r in readings]
    return SeriesUpload(
        device_id, body.data_type, stamps, [r.value for r in readings], qualities, unit, units,
        _utc(oldest), _utc(newest),
    )  # fmt: skip


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_monitoring(body: Any, now: datetime) -> Batch:
    """Seed 001: ``{device_id, timestamp?, metrics: {name: value}}`` or a list of those.
    A metric may also be ``{value, unit, quality, timestamp}``. Each item's device is its
    owner (whether it may send is for ingestion to say)."""
    items = body if isinstance(body, list) else [body]
    batch = Batch()
    now_iso = now.isoformat()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("metrics"), dict):
            batch.total += 1
            batch.reject(i, "each item needs a device_id and a metrics object")
            continue
        metrics = item["metrics"]
        try:
            device_id = uuid.UUID(str(item.get("device_id")))
        except ValueError:
            batch.total += len(metrics) or 1
            batch.reject(i, "unknown device")
            continue
        batch.owners[i] = device_id
        add_metrics(batch, i, device_id, metrics, item.get("timestamp", now_iso))
    return batch


def add_metrics(
    batch: Batch, index: int, device_id: uuid.UUID, metrics: dict[str, Any], ts: Any
) -> None:
    """A several-metrics object (``{name: value | {value, unit, quality, timestamp}}``)
    at ``ts`` unless a metric names its own time: a reading each, refused one by one."""
    for name, raw in metrics.items():
        if isinstance(raw, dict):
            add_reading(
                batch, index, device_id, name, raw.get("value"), raw.get("timestamp", ts),
                raw.get("unit"), raw.get("quality"), name_metric=True,
            )  # fmt: skip
        else:
            add_reading(batch, index, device_id, name, raw, ts, name_metric=True)


def parse_heartbeat(body: Any, device_id: uuid.UUID, now: datetime) -> Batch:
    """Seed 003 heartbeat: ``battery_level``, ``signal_strength``, ``memory_usage``,
    ``cpu_usage`` (and any other scalar field), stored as readings at ``timestamp``."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError("a heartbeat is a JSON object")
    ts = body.get("timestamp", now.isoformat())
    batch = Batch()
    for i, (name, raw) in enumerate(body.items()):
        if name == "timestamp" or raw is None:
            continue
        add_reading(batch, i, device_id, name, raw, ts, name_metric=True)
    return batch


def parse_upload(raw: bytes, device_id: uuid.UUID, now: datetime) -> Batch | SeriesUpload:
    """A seed 002 upload: decoded in C when it is plain (``fast_device_data``), else the
    general way. ``ValueError`` when the body is not one."""
    upload = fast_device_data(raw, device_id, now)
    if upload is not None:
        return upload
    return parse_device_data(read_body(raw), device_id, now)


def device_message(kind: str, body: dict[str, Any], device_id: uuid.UUID, now: datetime) -> Batch:
    """The readings of a device's WebSocket frame or MQTT message: a ``heartbeat``, a
    ``status`` (any scalar field is kept as a reading) or ``telemetry`` (the seed 001
    ``metrics`` shape, the seed 002 shape or a seed 003 single reading)."""
    if kind == "heartbeat":
        return parse_heartbeat(body, device_id, now)
    if kind == "status":
        return parse_heartbeat(
            {k: v for k, v in body.items() if isinstance(v, int | float | str | bool)},
            device_id,
            now,
        )
    if isinstance(body.get("metrics"), dict):  # {metrics: {name: value | {...}}, timestamp?}
        return parse_monitoring({**body, "device_id": str(device_id)}, now)
    if "sensor_type" in body and "data_type" not in body:  # seed 003 single reading
        body = {**body, "data_type": body["sensor_type"]}
    return parse_device_data(body, device_id, now)
