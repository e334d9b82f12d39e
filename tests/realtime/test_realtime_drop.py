"""Closing a dashboard's connection from the server side never hangs: a client whose
transport is already gone (a browser closed as the server stops) never drains the
goodbye that Engine.IO waits for, and shutting down must go on regardless."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest

from fieldwatch.core.settings import Settings
from fieldwatch.realtime import server as realtime_server
from fieldwatch.realtime.server import RealtimeServer


async def test_a_connection_that_cannot_close_is_dropped_after_a_bound(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(realtime_server, "DROP_TIMEOUT_S", 0.2)
    realtime = RealtimeServer(settings)
    never = asyncio.Event()

    async def disconnect_hangs(eio_sid: str) -> None:
        await never.wait()  # what Engine.IO's close does with no transport left

    monkeypatch.setattr(realtime.sio.manager, "eio_sid_from_sid", lambda sid, ns: "e-" + sid)
    monkeypatch.setattr(realtime.sio.eio, "disconnect", disconnect_hangs)
    clients = cast(dict[str, Any], realtime._clients)
    clients.update({"a": object(), "b": object()})

    started = time.monotonic()
    async with asyncio.timeout(5):
        await realtime.disconnect_all()
    assert realtime._clients == {}
    assert time.monotonic() - started < 2
