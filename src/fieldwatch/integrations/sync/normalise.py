"""Vendor samples → readings of the metrics catalogue, with a quality score.

Each page of samples becomes one ingestion upload of one metric in columns (its UCUM
unit, UTC times, the values: ``SeriesUpload``, which ingestion stores without further
work per reading) and one quality score, kept on the page's ``Segment``:

- completeness: the share of samples (of distinct times) that carry a value;
- plausibility: the share of those within the metric's plausible range
  (``HealthMetric.plausible``);
- duplicates: 1 − the share of samples repeating a time already in the page;
- gaps: 1 − the share of the page's time span lying in gaps longer than three times
  the median interval between samples (a page of fewer than three times has none);

the score is their product (1: complete, plausible, unique and regular). Samples
repeating a time are dropped (duplicates, like readings stored before); samples
without a value or out of range are not stored: they are the page's rejections and
count as failed records. Readings far from their neighbours are flagged as anomalies
(a robust z-score, ``integrations.anomalies``). The UTC offset most samples were
measured at is kept too.
"""

from __future__ import annotations

import itertools
import math
import statistics
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any, cast

from fieldwatch.integrations.anomalies import flagged
from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.metrics import HealthMetric
from fieldwatch.telemetry.ingest.batch import Rejection
from fieldwatch.telemetry.ingest.parse import SeriesUpload

GAP_FACTOR = 3


@dataclass
class Normalised:
    #: The readings to store (None: the page has none to store).
    upload: SeriesUpload | None
    #: Samples not stored (``{index, reason, metric}``, index in the page).
    rejected: list[Rejection]
    ts_from: datetime
    ts_to: datetime
    tz_offset_min: int | None
    quality: float
    parts: dict[str, Any] = field(default_factory=dict)
    #: Times of readings flagged as anomalies (see ``integrations.anomalies``).
    anomalies: list[str] = field(default_factory=list)


def _gaps(times: list[datetime]) -> float:
    """``times``: sorted and distinct."""
    if len(times) < 3:
        return 1.0
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    usual = statistics.median(steps)
    span = (times[-1] - times[0]).total_seconds()
    if usual <= 0 or span <= 0:
        return 1.0
    lost = sum(s - usual for s in steps if s > GAP_FACTOR * usual)
    return max(0.0, 1.0 - lost / span)


def _offset(samples: list[Sample], zones: set[Any]) -> int | None:
    """The UTC offset most samples were measured at (minutes); ``zones``: their tzinfos."""
    if len(zones) == 1 and isinstance(next(iter(zones)), timezone):
        common = next(iter(zones)).utcoffset(None)  # one fixed offset: no counting
    else:
        offsets = Counter(s.ts.utcoffset() for s in samples)
        common = offsets.most_common(1)[0][0] if offsets else None
    return int(common.total_seconds() // 60) if common is not None else None


def _plain(
    samples: list[Sample], zones: set[Any], low: float, high: float
) -> tuple[list[datetime], list[float]] | None:
    """The page's UTC times and values when it is plain (distinct times, every value
    given, finite and plausible), found with scans in C; None: one sample at a time."""
    stamps = [s.ts for s in samples]
    if zones != {UTC}:
        stamps = [t.astimezone(UTC) for t in stamps]
    values = [s.value for s in samples]
    if None in values or len(set(stamps)) != len(stamps):
        return None
    numbers = cast(list[float], values)
    if not math.isfinite(sum(numbers)) or not low <= min(numbers) <= max(numbers) <= high:
        return None
    return stamps, list(map(float, numbers))


def normalise(device_id: uuid.UUID, metric: HealthMetric, samples: list[Sample]) -> Normalised:
    """``samples`` (not empty) as an upload of ``metric`` readings, and their quality."""
    stamps: list[datetime] = []
    values: list[float] = []
    rejected: list[Rejection] = []
    seen: set[datetime] = set()
    valued = 0
    low, high, name = metric.low, metric.high, metric.name
    zones = {s.ts.tzinfo for s in samples}
    plain = _plain(samples, zones, low, high)
    if plain is not None:
        stamps, values = plain
        seen.update(stamps)
        valued = len(values)
    for index, sample in enumerate(samples if plain is None else ()):
        ts = sample.ts
        if ts.tzinfo is not UTC:
            ts = ts.astimezone(UTC)
        if ts in seen:
            continue  # the page's first reading at that time is the one stored
        seen.add(ts)
        value = sample.value
        if value is None:
            rejected.append({"index": index, "reason": "the vendor sent no value",
                             "metric": name})  # fmt: skip
            continue
        valued += 1
        if not low <= value <= high:
            rejected.append({"index": index, "reason": f"outside the plausible range "
                             f"{low:g}–{high:g} {metric.unit}", "metric": name})  # fmt: skip
            continue
        stamps.append(ts)
        values.append(float(value))
    n, distinct = len(samples), len(seen)
    repeated = n - distinct
    times = sorted(seen)
    parts = {
        "completeness": round(valued / distinct, 4),
        "plausibility": round(len(values) / valued, 4) if valued else 0.0,
        "duplicates": round(1 - repeated / n, 4),
        "gaps": round(_gaps(times), 4),
    }
    quality = 1.0
    for part in parts.values():
        quality *= part
    upload = None
    if values:
        upload = SeriesUpload(device_id, name, stamps, values, None, metric.unit, None,
                              min(stamps), max(stamps))  # fmt: skip
    anomalies = flagged(sorted(zip(stamps, values, strict=True)))
    return Normalised(upload, rejected, times[0], times[-1], _offset(samples, zones),
                      round(quality, 4), parts, anomalies)  # fmt: skip
