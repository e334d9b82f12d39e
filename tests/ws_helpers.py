"""WebSocket devices for the tests: a device with its token, and a session on the
device gateway of a real server (``conftest.Served``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from conftest import Actor, Served
from telemetry_helpers import device_with_token

WAIT_S = 10.0
QUIET_S = 0.3


@dataclass
class Device:
    id: str
    token: str
    headers: dict[str, str]


async def make_device(served: Served, actor: Actor) -> Device:
    device, headers = await device_with_token(served.http, actor)
    return Device(device["id"], headers["Authorization"].split()[1], headers)


async def open_ws(served: Served, device: Device, *, path_token: bool = False) -> ClientConnection:
    if path_token:
        return await connect(f"{served.ws_url}/ws/device/{device.token}", open_timeout=WAIT_S)
    return await connect(
        f"{served.ws_url}/ws/device", additional_headers=device.headers, open_timeout=WAIT_S
    )


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        return dict(json.loads(await ws.recv()))


async def nothing_more(ws: ClientConnection) -> None:
    """No frame arrives within QUIET_S."""
    try:
        async with asyncio.timeout(QUIET_S):
            frame = await ws.recv()
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {frame}")


async def connected(served: Served, device: Device, **kw: Any) -> ClientConnection:
    ws = await open_ws(served, device, **kw)
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(WAIT_S):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason
