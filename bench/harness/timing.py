"""The clock the benchmark's processes share, and timed requests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx


def now() -> float:
    """CLOCK_MONOTONIC: comparable between the processes of this benchmark."""
    return time.perf_counter()


def timed_gets(
    client: httpx.Client, urls: Iterable[str], params: dict[str, Any] | None = None
) -> list[float]:
    """``GET`` each URL in turn; the milliseconds each took (an error answer raises,
    after its timing)."""
    timings = []
    for url in urls:
        started = time.perf_counter()
        r = client.get(url, params=params)
        timings.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
    return timings
