"""Vendor samples → readings of the metrics catalogue, with a quality score.

Each page of samples becomes one ingestion batch of one metric (its UCUM unit, UTC
times) and one quality score, kept on the page's ``Segment``:

- completeness: the share of samples (of distinct times) that carry a value;
- plausibility: the share of those within the metric's plausible range
  (``HealthMetric.plausible``);
- duplicates: 1 − the share of samples repeating a time already in the page;
- gaps: 1 − the share of the page's time span lying in gaps longer than three times
  the median interval between samples (a page of fewer than three times has none);

the score is their product (1: complete, plausible, unique and regular). Samples
repeating a time are dropped (duplicates, like readings stored before); samples
without a value or out of range are not stored: they are the batch's rejections and
count as failed records. Readings far from their neighbours are flagged as anomalies
(a robust z-score, ``integrations.anomalies``). The UTC offset most samples were
measured at is kept too.
"""

from __future__ import annotations

import itertools
import statistics
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fieldwatch.integrations.anomalies import flagged
from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.metrics import HealthMetric
from fieldwatch.telemetry.ingest.batch import Batch, Candidate

GAP_FACTOR = 3


@dataclass
class Normalised:
    batch: Batch
    ts_from: datetime
    ts_to: datetime
    tz_offset_min: int | None
    quality: float
    parts: dict[str, Any] = field(default_factory=dict)
    #: Times of readings flagged as anomalies (see ``integrations.anomalies``).
    anomalies: list[str] = field(default_factory=list)


def _gaps(stamps: list[datetime]) -> float:
    times = sorted(set(stamps))
    if len(times) < 3:
        return 1.0
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    usual = statistics.median(steps)
    span = (times[-1] - times[0]).total_seconds()
    if usual <= 0 or span <= 0:
        return 1.0
    lost = sum(s - usual for s in steps if s > GAP_FACTOR * usual)
    return max(0.0, 1.0 - lost / span)


def _offset(samples: list[Sample]) -> int | None:
    offsets = Counter(s.ts.utcoffset() for s in samples)
    common = offsets.most_common(1)[0][0] if offsets else None
    return int(common.total_seconds() // 60) if common is not None else None


def normalise(device_id: uuid.UUID, metric: HealthMetric, samples: list[Sample]) -> Normalised:
    """``samples`` (not empty) as a batch of ``metric`` readings, and their quality."""
    batch = Batch()
    batch.total = len(samples)
    seen: set[datetime] = set()
    valued = plausible = repeated = 0
    for index, sample in enumerate(samples):
        ts = sample.ts.astimezone(UTC)
        if ts in seen:
            repeated += 1  # the page's first reading at that time is the one stored
            continue
        seen.add(ts)
        if sample.value is None:
            batch.reject(index, "the vendor sent no value", metric.name)
            continue
        valued += 1
        if not metric.plausible(sample.value):
            batch.reject(index, f"outside the plausible range {metric.low:g}–{metric.high:g} "
                         f"{metric.unit}", metric.name)  # fmt: skip
            continue
        plausible += 1
        batch.candidates.append(
            Candidate(index, device_id, metric.name, ts, sample.value, metric.unit, None)
        )
    n = len(samples)
    parts = {
        "completeness": round(valued / (n - repeated), 4),
        "plausibility": round(plausible / valued, 4) if valued else 0.0,
        "duplicates": round(1 - repeated / n, 4),
        "gaps": round(_gaps(sorted(seen)), 4),
    }
    quality = 1.0
    for value in parts.values():
        quality *= value
    stamps = sorted(seen)
    points = sorted((c.ts, c.value) for c in batch.candidates if isinstance(c.value, float | int))
    return Normalised(batch, stamps[0], stamps[-1], _offset(samples), round(quality, 4), parts,
                      flagged(points))  # fmt: skip
