"""Vendor samples to readings: units, UTC times, refusals and the quality score."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.metrics import METRICS
from fieldwatch.integrations.sync.normalise import normalise

PARIS = timezone(timedelta(hours=2))
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=PARIS)


def _minutes(*values: float | None, every: int = 1) -> list[Sample]:
    return [Sample(T0 + timedelta(minutes=i * every), v) for i, v in enumerate(values)]


def test_a_clean_page_scores_one_and_keeps_its_offset() -> None:
    device = uuid.uuid4()
    out = normalise(device, METRICS["heart_rate"], _minutes(60, 61, 62, 63))
    assert out.quality == 1.0 and out.tz_offset_min == 120
    assert [(c.metric, c.unit, c.value) for c in out.batch.candidates] == [
        ("heart_rate", "/min", v) for v in (60, 61, 62, 63)]  # fmt: skip
    assert out.batch.candidates[0].ts == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert (out.ts_from, out.ts_to) == (T0, T0 + timedelta(minutes=3))


def test_missing_implausible_repeated_and_gappy_samples_lower_the_score() -> None:
    samples = _minutes(60, None, 400, 62)  # no value, and 400/min is not a heart rate
    samples.append(Sample(samples[-1].ts, 62))  # the same time twice
    samples.append(Sample(T0 + timedelta(minutes=13), 70))  # 10 minutes missing
    out = normalise(uuid.uuid4(), METRICS["heart_rate"], samples)
    assert [c.value for c in out.batch.candidates] == [60, 62, 70]
    assert [r["index"] for r in out.batch.rejected] == [1, 2]
    assert "plausible range 25–250" in out.batch.rejected[1]["reason"]
    parts = out.parts
    assert (parts["completeness"], parts["plausibility"]) == (0.8, 0.75)
    assert parts["duplicates"] == round(5 / 6, 4)
    assert parts["gaps"] == round(1 - 9 / 13, 4)  # a 10-minute step where 1 is usual
    assert out.quality == round(
        parts["completeness"] * parts["plausibility"] * parts["duplicates"] * parts["gaps"], 4
    )
