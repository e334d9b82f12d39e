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
    upload = out.upload
    assert upload is not None and out.rejected == []
    assert (upload.device_id, upload.metric, upload.unit) == (device, "heart_rate", "/min")
    assert upload.values == [60, 61, 62, 63]
    assert upload.stamps[0] == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert upload.stamps[0].utcoffset() == timedelta(0)  # stored in UTC
    assert (upload.oldest, upload.newest) == (T0, T0 + timedelta(minutes=3))
    assert (out.ts_from, out.ts_to) == (T0, T0 + timedelta(minutes=3))


def test_missing_implausible_repeated_and_gappy_samples_lower_the_score() -> None:
    samples = _minutes(60, None, 400, 62)  # no value, and 400/min is not a heart rate
    samples.append(Sample(samples[-1].ts, 62))  # the same time twice
    samples.append(Sample(T0 + timedelta(minutes=13), 70))  # 10 minutes missing
    out = normalise(uuid.uuid4(), METRICS["heart_rate"], samples)
    assert out.upload is not None and out.upload.values == [60, 62, 70]
    assert [r["index"] for r in out.rejected] == [1, 2]
    assert "plausible range 25–250" in out.rejected[1]["reason"]
    parts = out.parts
    assert (parts["completeness"], parts["plausibility"]) == (0.8, 0.75)
    assert parts["duplicates"] == round(5 / 6, 4)
    assert parts["gaps"] == round(1 - 9 / 13, 4)  # a 10-minute step where 1 is usual
    assert out.quality == round(
        parts["completeness"] * parts["plausibility"] * parts["duplicates"] * parts["gaps"], 4
    )


def test_a_page_with_nothing_to_store_has_no_upload_but_its_rejections() -> None:
    out = normalise(uuid.uuid4(), METRICS["heart_rate"], _minutes(None, 400))
    assert out.upload is None
    assert [(r["index"], r["metric"]) for r in out.rejected] == [(0, "heart_rate"),
                                                                  (1, "heart_rate")]  # fmt: skip
    assert (out.parts["completeness"], out.parts["plausibility"]) == (0.5, 0.0)
    assert out.tz_offset_min == 120


def test_a_value_that_is_not_a_number_is_refused_like_an_implausible_one() -> None:
    out = normalise(uuid.uuid4(), METRICS["heart_rate"], _minutes(60, float("nan"), 62))
    assert out.upload is not None and out.upload.values == [60, 62]
    assert [r["index"] for r in out.rejected] == [1]
    assert "plausible range" in out.rejected[0]["reason"]
