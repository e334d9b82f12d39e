"""Pre-aggregating inserted readings into 1-minute and 1-hour rollup deltas."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

#: A row to write: (series_id, ts, value, text_value, quality)
Row = tuple[int, datetime, float | None, str | None, int | None]
Delta = tuple[int, datetime, int, float, float, float]  # series, bucket, count, sum, min, max


def deltas(rows: Iterable[Row], seconds: int) -> list[Delta]:
    """Count/sum/min/max per (series, bucket of ``seconds``), sorted by key so concurrent
    upserts lock rows in the same order."""
    acc: dict[tuple[int, int], list[float]] = {}
    for series_id, ts, value, _text, _q in rows:
        if value is None:
            continue
        epoch = int(ts.timestamp()) // seconds * seconds
        key = (series_id, epoch)
        cur = acc.get(key)
        if cur is None:
            acc[key] = [1, value, value, value]
        else:
            cur[0] += 1
            cur[1] += value
            if value < cur[2]:
                cur[2] = value
            if value > cur[3]:
                cur[3] = value
    return [
        (sid, datetime.fromtimestamp(epoch, UTC), int(c), s, lo, hi)
        for (sid, epoch), (c, s, lo, hi) in sorted(acc.items())
    ]


def latest(rows: Iterable[Row]) -> list[Row]:
    """The newest row per series, sorted by series id."""
    best: dict[int, Row] = {}
    for row in rows:
        cur = best.get(row[0])
        if cur is None or row[1] > cur[1]:
            best[row[0]] = row
    return [best[k] for k in sorted(best)]
