"""Anomaly flags: robust z-score over rolling windows, kept with the page's segment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fieldwatch.integrations.anomalies import MAX_FLAGGED, flagged
from fieldwatch.integrations.connectors.base import Sample
from fieldwatch.integrations.metrics import METRICS
from fieldwatch.integrations.sync.normalise import normalise

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def _series(values: list[float]) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=i), v) for i, v in enumerate(values)]


def test_a_spike_is_flagged_and_ordinary_variation_is_not() -> None:
    values = [60.0 + (i % 5) for i in range(120)]
    assert flagged(_series(values)) == []
    values[30], values[100] = 170.0, 20.0
    assert flagged(_series(values)) == [(T0 + timedelta(minutes=m)).isoformat() for m in (30, 100)]


def test_windows_are_local_and_constant_or_short_series_flag_nothing() -> None:
    # A level shift between windows is not an anomaly: each window has its own median.
    values = [60.0 + (i % 3) for i in range(60)] + [120.0 + (i % 3) for i in range(60)]
    assert flagged(_series(values)) == []
    assert flagged(_series([70.0] * 100 + [71.0])) == []  # MAD 0 in the last window
    assert flagged(_series([60.0, 61.0, 200.0])) == []  # too few readings to judge


def test_flags_are_capped() -> None:
    values = [60.0 + (i % 7) if i % 6 else 250.0 for i in range(6000)]
    assert len(flagged(_series(values))) == MAX_FLAGGED


def test_normalise_keeps_the_flagged_times() -> None:
    samples = [Sample(T0 + timedelta(minutes=i), 60.0 + (i % 4)) for i in range(90)]
    samples[45] = Sample(samples[45].ts, 180.0)
    out = normalise(uuid.uuid4(), METRICS["heart_rate"], samples)
    assert out.anomalies == [samples[45].ts.isoformat()]
    assert out.quality == 1.0  # an anomaly is plausible data: the score is not lowered


def test_a_short_last_window_is_judged_against_a_full_window() -> None:
    # A 500-reading page of a 40-minute sawtooth: its last 20 readings alone hold a jump
    # that is ordinary in a full window.
    values = [55.0 + (i % 40) for i in range(500)]
    assert flagged(_series(values)) == []
    values[495] = 300.0
    assert flagged(_series(values)) == [(T0 + timedelta(minutes=495)).isoformat()]
