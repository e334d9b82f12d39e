"""Coalescing telemetry pushes so that a chatty device does not flood a browser.

Per device only the newest pending update is kept (metrics merged, newer values win).
A flusher task sends what is pending, then waits ``interval`` before the next send: a
device's first update after a quiet spell goes out at once, and a device is never sent
more than one update per interval.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fieldwatch.core.tasks import cancel
from fieldwatch.realtime.messages import TELEMETRY, merge_telemetry

log = logging.getLogger(__name__)

Send = Callable[[str, dict[str, Any], uuid.UUID, uuid.UUID | None], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    workspace_id: uuid.UUID
    message: dict[str, Any]


class TelemetryCoalescer:
    def __init__(self, send: Send, interval_s: float) -> None:
        self._send = send
        self.interval_s = max(0.0, interval_s)
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def add(self, workspace_id: uuid.UUID, device_id: uuid.UUID, message: dict[str, Any]) -> None:
        pending = self._pending.get(device_id)
        if pending is None:
            self._pending[device_id] = _Pending(workspace_id, message)
        else:
            pending.message = merge_telemetry(pending.message, message)
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="realtime-telemetry-flusher")

    async def stop(self) -> None:
        """Stop the flusher; what is still pending is dropped (nobody is listening)."""
        await cancel(self._task)
        self._task = None
        self._pending.clear()
        self._wake.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval_s)

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        for device_id, pending in batch.items():
            try:
                await self._send(TELEMETRY, pending.message, pending.workspace_id, device_id)
            except Exception:
                log.exception("pushing telemetry failed", extra={"device_id": str(device_id)})
