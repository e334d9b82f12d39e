"""Anomaly flags: a robust z-score per reading over a rolling window.

The readings of a page (in time order) are cut into consecutive windows of ``WINDOW``
readings (the last one reaching back to hold ``WINDOW`` readings too); in each window
a reading is flagged when its modified z-score ``0.6745 · (x − median) / MAD`` exceeds
``THRESHOLD`` in absolute value (Iglewicz and Hoaglin's rule). A window whose MAD is 0
(constant values) flags nothing. Each window costs O(w log w) for a fixed ``w``: O(n)
per page. At most ``MAX_FLAGGED`` times are kept per page (the segment's
``anomalies``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime

WINDOW = 60
MIN_WINDOW = 10  # fewer readings in a page: nothing is judged
THRESHOLD = 3.5
MAX_FLAGGED = 100


def _windows(n: int) -> list[tuple[int, int, int]]:
    """(start, end, first reading judged) of each window: a short last window reaches
    back to hold ``WINDOW`` readings, judging only those the one before did not."""
    out = []
    for i in range(0, n, WINDOW):
        end = min(i + WINDOW, n)
        out.append((max(0, end - WINDOW), end, i))
    return out


def flagged(points: Sequence[tuple[datetime, float]]) -> list[str]:
    """The times (ISO 8601, UTC as given) of the anomalous readings among ``points``
    (time-ordered), at most ``MAX_FLAGGED``."""
    out: list[str] = []
    if len(points) < MIN_WINDOW:
        return out
    for start, end, first in _windows(len(points)):
        values = [v for _, v in points[start:end]]
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        if mad == 0:
            continue
        for ts, value in points[first:end]:
            if abs(0.6745 * (value - median) / mad) > THRESHOLD:
                out.append(ts.isoformat())
                if len(out) >= MAX_FLAGGED:
                    return out
    return out
