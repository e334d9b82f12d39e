"""The device WebSocket gateway, with the real ``websockets`` client against a real
uvicorn server (the production ASGI app: Socket.IO in front of FastAPI)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import Actor, Factory, Served, serve_runtime
from fieldwatch.monitoring.limits import TokenBucket
from fieldwatch.monitoring.presence import OFFLINE, ONLINE
from fieldwatch.runtime import Runtime
from fieldwatch.transports.sessions import ErrorWindow
from telemetry_helpers import iso, recent
from ws_helpers import WAIT_S, Device, closed_with, connected, make_device, open_ws, recv


async def eventually(check: Callable[[], Any]) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def token_id(served: Served, actor: Actor, device: Device) -> str:
    r = await served.http.get(f"/api/v1/devices/{device.id}/tokens", headers=actor.headers)
    assert r.status_code == 200, r.text
    (only,) = r.json()["items"]
    return str(only["id"])


async def refused(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, additional_headers=headers, open_timeout=WAIT_S)
    return info.value.response.status_code


async def test_handshake_refused_for_bad_missing_and_revoked_tokens(
    served: Served, factory: Factory
) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    url = served.ws_url
    assert await refused(f"{url}/ws/device/fwd_not-a-real-token") == 403
    assert await refused(f"{url}/ws/device/{admin.token}") == 403  # a user token is no device's
    assert await refused(f"{url}/ws/device") == 403
    assert await refused(f"{url}/ws/device", {"Authorization": "Bearer fwd_wrong"}) == 403

    tid = await token_id(served, admin, device)
    r = await served.http.delete(f"/api/v1/devices/{device.id}/tokens/{tid}", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert await refused(f"{url}/ws/device/{device.token}") == 403
    assert await refused(f"{url}/ws/device", device.headers) == 403


async def test_welcome_and_presence(served: Served, factory: Factory, runtime: Runtime) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    dev = uuid.UUID(device.id)
    assert (await runtime.presence.connectivity_of([dev]))[dev] == OFFLINE
    for path_token in (False, True):
        ws = await open_ws(served, device, path_token=path_token)
        welcome = await recv(ws)
        assert welcome["type"] == "welcome"
        assert welcome["device_id"] == device.id
        assert welcome["server_time"].startswith(str(recent().year))
        assert welcome["server_config"] == {
            "heartbeat_interval": runtime.settings.heartbeat_interval_s,
            "data_reporting_interval": 300,
            "max_retry_attempts": 3,
        }
        assert (await runtime.presence.connectivity_of([dev]))[dev] == ONLINE
        await ws.close()

        async def offline() -> bool:
            return (await runtime.presence.connectivity_of([dev]))[dev] == OFFLINE

        await eventually(offline)
    url = f"/api/v1/devices/{device.id}/connectivity"

    async def written() -> bool:  # the state turns first; its history row is group-committed
        r = await served.http.get(url, headers=admin.headers)
        return r.status_code == 200 and len(r.json()["items"]) >= 4

    await eventually(written)
    r = await served.http.get(url, headers=admin.headers)
    assert r.status_code == 200, r.text
    history = [(e["connectivity"], e["reason"]) for e in reversed(r.json()["items"])]
    assert history == [(ONLINE, "websocket"), (OFFLINE, "websocket closed")] * 2


async def test_telemetry_is_stored_acked_and_deduplicated(served: Served, factory: Factory) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    ws = await connected(served, device, path_token=True)
    ts = iso(recent(30))
    frame = {"type": "telemetry", "id": "f-1", "timestamp": ts, "metrics": {"temperature": 21.5}}
    await ws.send(json.dumps(frame))
    ack = await recv(ws)
    assert ack == {"type": "ack", "ref": "f-1", "accepted": 1, "duplicates": 0, "rejected": []}
    # acked means committed: the reading is readable at once
    r = await served.http.get(f"/api/v1/devices/{device.id}/data", headers=admin.headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["data_type"], i["value"]) for i in items] == [("temperature", 21.5)]

    await ws.send(json.dumps(frame))  # resent (the ack was lost, say)
    assert await recv(ws) == {
        "type": "ack", "ref": "f-1", "accepted": 0, "duplicates": 1, "rejected": []
    }  # fmt: skip

    seed3 = {"type": "telemetry", "sensor_type": "humidity", "value": 40, "unit": "%",
             "quality": "good", "timestamp": ts}  # fmt: skip
    await ws.send(json.dumps(seed3))
    ack = await recv(ws)
    assert (ack["ref"], ack["accepted"], ack["duplicates"]) == (None, 1, 0)

    rich = {"type": "telemetry", "id": 7, "metrics": {
        "pressure": {"value": 1013.2, "unit": "hPa", "timestamp": ts},
        "door": "open", "bad": [1, 2]}}  # fmt: skip
    await ws.send(json.dumps(rich))
    ack = await recv(ws)
    assert (ack["ref"], ack["accepted"]) == (7, 2)
    assert [x["metric"] for x in ack["rejected"]] == ["bad"]

    hb = {"type": "heartbeat", "id": "h", "battery_level": 87, "signal_strength": -61,
          "memory_usage": 40.5, "cpu_usage": 12, "timestamp": ts}  # fmt: skip
    await ws.send(json.dumps(hb))
    assert (await recv(ws))["accepted"] == 4
    await ws.send(json.dumps({"type": "status", "id": "s", "state": "idle", "uptime": 3600,
                              "nested": {"ignored": True}, "timestamp": ts}))  # fmt: skip
    assert (await recv(ws))["accepted"] == 2

    r = await served.http.get(f"/api/v1/devices/{device.id}/data/latest", headers=admin.headers)
    metrics = r.json()["metrics"]
    assert metrics["humidity"]["value"] == 40
    assert metrics["pressure"]["value"] == 1013.2
    assert metrics["battery_level"]["value"] == 87
    assert metrics["state"]["value"] == "idle"
    await ws.close()


async def test_second_connection_replaces_the_first(served: Served, factory: Factory) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    first = await connected(served, device)
    second = await connected(served, device, path_token=True)
    assert await closed_with(first) == (4000, "replaced by a new connection")
    await second.send(json.dumps({"type": "heartbeat", "battery_level": 50}))
    assert (await recv(second))["accepted"] == 1
    await second.close()


async def test_revoking_the_token_closes_the_session(
    served: Served, factory: Factory, runtime: Runtime
) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    other = await make_device(served, admin)
    ws = await connected(served, device)
    bystander = await connected(served, other)
    tid = await token_id(served, admin, device)
    r = await served.http.delete(f"/api/v1/devices/{device.id}/tokens/{tid}", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert await closed_with(ws) == (4001, "credentials revoked")
    await bystander.send(json.dumps({"type": "heartbeat", "battery_level": 50}))
    assert (await recv(bystander))["accepted"] == 1  # the other device's session is intact
    await bystander.close()


async def test_bad_frames_get_errors_and_the_connection_stays_open(
    served: Served, factory: Factory, runtime: Runtime
) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    ws = await connected(served, device)
    await ws.send("{not json")
    assert (await recv(ws))["code"] == "bad_json"
    await ws.send("[1, 2]")
    assert (await recv(ws))["code"] == "bad_json"
    await ws.send(json.dumps({"type": "selfie", "id": "x"}))
    error = await recv(ws)
    assert (error["type"], error["code"], error["ref"]) == ("error", "unknown_type", "x")
    await ws.send(json.dumps({"type": "command_ack", "id": "c1", "command_id": "abc"}))
    error = await recv(ws)
    assert (error["code"], error["ref"]) == ("invalid", "c1")  # not a command id
    await ws.send(json.dumps({"type": "telemetry", "id": "e", "values": 3, "data_type": "t"}))
    assert (await recv(ws))["code"] == "invalid"
    await ws.send(json.dumps({"type": "heartbeat", "id": "ok", "battery_level": 99}))
    ack = await recv(ws)
    assert (ack["type"], ack["ref"], ack["accepted"]) == ("ack", "ok", 1)
    await ws.close()


async def test_a_frame_over_the_limit_is_refused_before_it_is_read(
    served: Served, factory: Factory, runtime: Runtime
) -> None:
    """The server's own message limit is the device frame limit: a frame announcing more
    is answered with close code 1009 at once, before its payload arrives (the server
    reads the length in the header and stops there)."""
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    limit = runtime.settings.ws_max_frame_bytes
    ws = await connected(served, device)
    await ws.send(json.dumps({"type": "status", "id": "fits", "pad": "x" * (limit - 100)}))
    assert (await recv(ws))["ref"] == "fits"  # up to the limit is fine
    await ws.send(json.dumps({"type": "status", "id": "big", "pad": "x" * limit}))
    assert (await closed_with(ws))[0] == 1009

    reader, writer = await raw_session(served, device)
    header = bytes([0x81, 0x80 | 127]) + (16 << 20).to_bytes(8, "big") + b"mask"
    writer.write(header + b"only the first bytes of 16 MiB")  # and never the rest
    await writer.drain()
    async with asyncio.timeout(WAIT_S):
        while True:  # the welcome frame first, then the server's close frame
            head = await reader.readexactly(2)
            size = head[1] & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            payload = await reader.readexactly(size)
            if head[0] & 0x0F == 0x8:
                break
    assert int.from_bytes(payload[:2], "big") == 1009
    writer.close()


async def raw_session(
    served: Served, device: Device
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake by hand, so that a test can send a frame header alone."""
    host, port = served.ws_url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /ws/device HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {device.token}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(WAIT_S):
        response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101"), response
    return reader, writer


async def test_too_many_bad_frames_disconnect_only_that_device(
    served: Served, factory: Factory, runtime: Runtime
) -> None:
    admin = await factory.user("admin")
    noisy, calm = await make_device(served, admin), await make_device(served, admin)
    ws = await connected(served, noisy)
    good = await connected(served, calm)
    limit = runtime.settings.ws_max_errors
    for _ in range(limit + 1):
        await ws.send("garbage")
    for _ in range(limit):
        assert (await recv(ws))["code"] == "bad_json"
    assert (await closed_with(ws))[0] == 1008
    await good.send(json.dumps({"type": "heartbeat", "id": 1, "cpu_usage": 3}))
    assert (await recv(good))["accepted"] == 1
    await good.close()


async def test_rate_limit(served: Served, factory: Factory, runtime: Runtime) -> None:
    runtime.settings.ws_max_frames_per_s = 5
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    ws = await connected(served, device)
    for i in range(8):  # a burst of 8 with room for 5
        await ws.send(json.dumps({"type": "status", "id": i}))
    replies = [await recv(ws) for _ in range(8)]
    kinds = [r.get("code", r["type"]) for r in replies]
    assert kinds.count("ack") >= 5 and kinds.count("rate_limited") >= 2, kinds
    limited = next(r for r in replies if r.get("code") == "rate_limited")
    assert limited["message"] == "Over the rate limit of 5 messages per 1 s; slow down."
    assert 0 < limited["retry_after"] <= 0.2
    assert runtime.limits.refused[("websocket", "rate_limited")] == kinds.count("rate_limited")
    # persistent flooding ends the session
    for i in range(40):
        await ws.send(json.dumps({"type": "status", "id": i}))
    assert (await closed_with(ws))[0] == 1008
    assert runtime.limits.disconnects["websocket"] == 1


def test_token_bucket_and_error_window() -> None:
    now = [0.0]
    bucket = TokenBucket(2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert [bucket.take(), bucket.take()] == [True, False]
    window = ErrorWindow(60, clock=lambda: now[0])
    assert [window.add(), window.add()] == [1, 2]
    now[0] = 61
    assert window.add() == 1


async def test_device_token_is_never_logged(
    served: Served, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Earlier uvicorn servers in the session may have configured uvicorn's loggers (level
    # WARNING, no propagation to the root): listen on uvicorn.error directly.
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        await _token_not_logged(served, factory, caplog)
    finally:
        uvicorn_log.removeHandler(caplog.handler)


async def _token_not_logged(
    served: Served, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    ws = await connected(served, device, path_token=True)
    await ws.send(json.dumps({"type": "heartbeat", "battery_level": 1}))
    await recv(ws)
    await ws.close()
    assert await refused(f"{served.ws_url}/ws/device/{device.token}x") == 403
    await asyncio.sleep(0.1)
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "/ws/device/fwd_***" in text  # uvicorn did log the handshakes, masked
    assert device.token not in text
    assert device.token[12:] not in text


async def test_retiring_the_device_closes_the_session(served: Served, factory: Factory) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    ws = await connected(served, device)
    r = await served.http.put(f"/api/v1/devices/{device.id}/retire", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert await closed_with(ws) == (4001, "credentials revoked")
    assert await refused(f"{served.ws_url}/ws/device", device.headers) == 403


async def test_a_server_shutdown_does_not_mark_devices_offline(
    runtime: Runtime, factory: Factory
) -> None:
    """The server closing its connections for a restart (1012) is not the device going
    away: no offline transition, no history row, no offline alert; the device simply
    reconnects to the next server (and the presence sweep notices it if it does not)."""
    admin = await factory.user("admin")
    async with serve_runtime(runtime) as served:
        device = await make_device(served, admin)
        dev = uuid.UUID(device.id)
        ws = await connected(served, device)
        assert (await runtime.presence.connectivity_of([dev]))[dev] == ONLINE
    code, _reason = await closed_with(ws)  # the server stopped and closed it
    assert code == 1012
    await asyncio.sleep(0.2)
    assert (await runtime.presence.connectivity_of([dev]))[dev] == ONLINE
    async with serve_runtime(runtime) as served:
        r = await served.http.get(f"/api/v1/devices/{device.id}/connectivity",
                                  headers=admin.headers)  # fmt: skip
        assert [e["connectivity"] for e in r.json()["items"]] == [ONLINE]
