"""The payloads of the data topic, ``iot/devices/data/{id}/{sensor_type}``, turned into
readings of a batch.

A message holds one reading, or an array of them (each with its own timestamp)::

    {"value": 23.5, "unit": "celsius", "quality": "good", "timestamp": 1763812800}
    [{"value": 23.5, "timestamp": 1763812800}, {"value": 23.6, "timestamp": 1763812860}]

On the sensor type ``metrics`` (``topics.METRICS``) a message may also hold several
metrics at once, as the WebSocket ``telemetry`` frame and the HTTP ``/monitoring/data``
upload do (a metric is a value, or ``{value, unit, quality, timestamp}``), or an array
of those::

    {"timestamp": 1763812800, "metrics": {"temperature": 21.5, "door": "open",
                                          "pressure": {"value": 1013.2, "unit": "hPa"}}}

The metric names are those of the payload, as over the other transports; the topic of
any other sensor type carries readings of that sensor type only, so several metrics sent
there are refused (with a pointer to the right topic). A ``metrics`` topic message
without ``metrics`` is a reading of a sensor type named "metrics", as it always was.

Each array element (or the message, when it is not an array) is an item of its device
in the batch (``Batch.owners``), so a refused reading is told with its position in the
array (``Positions``). A message with more readings than the limit is refused whole
(``TooManyReadings``), before any of them is looked at. Nothing here is per message
beyond a loop over what the payload holds: no regular expressions, no objects per
reading but the batch's own.
"""

from __future__ import annotations

import sys
import uuid
from bisect import bisect_right
from typing import Annotated, Any

import msgspec
import orjson

from fieldwatch.telemetry.ingest.batch import Batch, Candidate
from fieldwatch.telemetry.ingest.parse import (
    MAX_METRIC,
    MAX_UNIT,
    QUALITY,
    NotAnObject,
    QualityName,
    add_metrics,
    add_reading,
    timestamp,
)
from fieldwatch.transports.mqtt.topics import METRICS, PREFIX

NOT_A_READING = "a reading is an object with a value"

Payload = dict[str, Any] | list[Any]


class TooManyReadings(ValueError):
    """A message with more readings than one message may carry."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"{count} readings in one message, at most {limit} are accepted: "
            "send them in several messages"
        )
        self.count = count
        self.limit = limit


class _Number(msgspec.Struct, forbid_unknown_fields=True):
    """The commonest reading: a finite number with at most a timestamp, a unit and a
    quality. Anything else in a message (text, booleans, other fields, a value out of
    range) sends the whole message the general way, which says what is wrong."""

    value: Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
    timestamp: float | str | None = None
    unit: Annotated[str, msgspec.Meta(max_length=MAX_UNIT)] | None = None
    quality: QualityName | None = None


_numbers = msgspec.json.Decoder(_Number | list[_Number])


def add_message(
    batch: Batch,
    positions: Positions,
    device_id: uuid.UUID,
    sensor_type: str,
    raw: bytes,
    stamp: str,
    limit: int,
) -> int:
    """Add the readings of one data message (its payload ``raw``) to ``batch``; returns
    how many it holds. Numbers on a sensor type's topic are decoded straight into the
    batch (msgspec, in C); any other message is decoded by ``decode_data`` and taken
    reading by reading (``add_readings``). Raises as those do."""
    if sensor_type != METRICS and 0 < len(sensor_type) <= MAX_METRIC and raw:
        try:
            readings = _numbers.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # not that shape: the general way, below
        else:
            if isinstance(readings, _Number):
                _add_numbers(batch, device_id, sensor_type, (readings,), stamp)
                return 1
            if len(readings) > limit:
                raise TooManyReadings(len(readings), limit)
            first = len(batch.owners)
            _add_numbers(batch, device_id, sensor_type, readings, stamp)
            if readings:
                positions.add(first, len(batch.owners))
            return len(readings)
    payload = decode_data(raw)
    return add_readings(batch, positions, device_id, sensor_type, payload, stamp, limit)


def _add_numbers(
    batch: Batch,
    device_id: uuid.UUID,
    metric: str,
    readings: list[_Number] | tuple[_Number, ...],
    stamp: str,
) -> None:
    """Each reading an item of ``device_id``, as ``add_reading`` would make it."""
    owners, append, first = batch.owners, batch.candidates.append, len(batch.owners)
    known = batch.stamps  # timestamps already converted in this batch (the usual case)
    batch.total += len(readings)
    for index, reading in enumerate(readings, first):
        owners[index] = device_id
        raw_ts = reading.timestamp
        if raw_ts is None:
            raw_ts = stamp
        ts = known.get(raw_ts)
        if ts is None:
            ts = timestamp(batch, raw_ts)
        if isinstance(ts, str):
            batch.reject(index, ts, metric)
            continue
        quality = reading.quality
        append(
            Candidate(
                index, device_id, metric, ts, reading.value, reading.unit or None,
                None if quality is None else QUALITY[quality],
            )
        )  # fmt: skip


def decode_data(raw: bytes) -> Payload:
    """A data message's JSON: an object or an array (an empty payload is ``{}``).
    ``ValueError`` when malformed (NaN and Infinity included), ``NotAnObject`` when it
    is neither."""
    if not raw:
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"Malformed JSON: {exc}") from exc
    if not isinstance(payload, dict | list):
        raise NotAnObject("a data message is a JSON object or an array of them")
    return payload


def count(payload: Payload, several: bool) -> int:
    """How many readings ``payload`` holds: one per element, and on the ``metrics``
    topic (``several``) one per metric."""
    items = payload if isinstance(payload, list) else (payload,)
    if not several:
        return len(items)
    n = 0
    for item in items:
        metrics = item.get("metrics") if isinstance(item, dict) else None
        n += len(metrics) if isinstance(metrics, dict) else 1
    return n


class Positions:
    """Which items of a batch came as the elements of an array, and where in it:
    ranges of item indexes, one per array message, in the order they were added."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, first: int, end: int) -> None:
        self.starts.append(first)
        self.ends.append(end)

    def of(self, item: int) -> int | None:
        """The position of ``item`` in its message's array; None if it was no array's."""
        k = bisect_right(self.starts, item) - 1
        if k >= 0 and item < self.ends[k]:
            return item - self.starts[k]
        return None


def add_readings(
    batch: Batch,
    positions: Positions,
    device_id: uuid.UUID,
    sensor_type: str,
    payload: Payload,
    stamp: str,
    limit: int,
) -> int:
    """Add the readings of one message from ``device_id`` to ``batch`` (readings without
    a timestamp get ``stamp``); returns how many it holds. ``TooManyReadings`` (nothing
    added) when more than ``limit``."""
    several = sensor_type == METRICS
    n = count(payload, several) if several or isinstance(payload, list) else 1
    if n > limit:
        raise TooManyReadings(n, limit)
    if isinstance(payload, dict):
        _item(batch, batch.next_item(device_id), device_id, sensor_type, payload, stamp, several)
        return n
    if not payload:
        return 0
    first = len(batch.owners)
    next_item = batch.next_item
    for item in payload:
        _item(batch, next_item(device_id), device_id, sensor_type, item, stamp, several)
    positions.add(first, len(batch.owners))
    return n


def _item(
    batch: Batch,
    index: int,
    device_id: uuid.UUID,
    sensor_type: str,
    item: Any,
    stamp: str,
    several: bool,
) -> None:
    """One reading, or (``several``) one several-metrics object, as item ``index``."""
    if not isinstance(item, dict):
        batch.total += 1
        batch.reject(index, NOT_A_READING, sensor_type)
        return
    metrics = item.get("metrics")
    if not isinstance(metrics, dict):
        add_reading(
            batch, index, device_id, sensor_type, item.get("value"),
            item.get("timestamp", stamp), item.get("unit"), item.get("quality"),
            name_metric=True,
        )  # fmt: skip
        return
    if not several:
        batch.total += 1
        batch.reject(index, wrong_topic(device_id), sensor_type)
        return
    add_metrics(batch, index, device_id, metrics, item.get("timestamp", stamp))


def wrong_topic(device_id: uuid.UUID) -> str:
    return f"several metrics at once go to {PREFIX}/data/{device_id}/{METRICS}"
