"""Slows down password guessing: too many failures for one account in a window → 429."""

from __future__ import annotations

import time
from collections import deque


class LoginThrottle:
    def __init__(self, max_failures: int, window_s: int) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def retry_after(self, key: str) -> int | None:
        now = time.monotonic()
        q = self._recent(key, now)
        if len(q) >= self.max_failures:
            return max(1, int(self.window_s - (now - q[0])) + 1)
        if not q:
            self._failures.pop(key, None)
        return None

    def failed(self, key: str) -> None:
        self._recent(key, time.monotonic()).append(time.monotonic())
        if len(self._failures) > 100_000:  # bound memory under a spray attack
            self._failures.clear()

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
