"""The device listener (``FIELDWATCH_DEVICE_WS_PORT``): the same protocol on a port of
its own, served by the ``websockets`` library's server. The gateway's behaviour tests run
here again against it (the ``served`` fixture below points their WebSockets at the
listener; HTTP still goes to the API's port)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from test_ws_gateway import (  # noqa: F401 (run again here, on the listener)
    closed_with,
    connected,
    make_device,
    recv,
    test_a_frame_over_the_limit_is_refused_before_it_is_read,
    test_bad_frames_get_errors_and_the_connection_stays_open,
    test_handshake_refused_for_bad_missing_and_revoked_tokens,
    test_rate_limit,
    test_retiring_the_device_closes_the_session,
    test_revoking_the_token_closes_the_session,
    test_second_connection_replaces_the_first,
    test_telemetry_is_stored_acked_and_deduplicated,
    test_too_many_bad_frames_disconnect_only_that_device,
    test_welcome_and_presence,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import Factory, Served, load_test_module, serve_runtime
from fieldwatch.app import device_edge
from fieldwatch.monitoring.presence import ONLINE
from fieldwatch.runtime import Runtime
from fieldwatch.transports.ws_listener import DeviceListener, protocol_log

# The command tests, run again here: on the listener.
_COMMANDS = load_test_module("commands/test_commands.py")
test_a_burst_of_connects_gets_each_device_its_own_commands_and_config = (
    _COMMANDS.test_a_burst_of_connects_gets_each_device_its_own_commands_and_config
)
test_a_sent_unacked_command_is_resent_after_reconnect = (
    _COMMANDS.test_a_sent_unacked_command_is_resent_after_reconnect
)
test_config_round_trip = _COMMANDS.test_config_round_trip
test_full_round_trip_over_websocket = _COMMANDS.test_full_round_trip_over_websocket
test_waiting_commands_arrive_in_order_on_connect = (
    _COMMANDS.test_waiting_commands_arrive_in_order_on_connect
)


@pytest.fixture
async def listener(runtime: Runtime) -> AsyncIterator[DeviceListener]:
    edge = device_edge(runtime)
    running = DeviceListener(edge, "127.0.0.1", 0)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await edge.stop()


@pytest.fixture
async def served(runtime: Runtime, listener: DeviceListener) -> AsyncIterator[Served]:
    async with serve_runtime(runtime) as api:
        yield Served(api.http, f"ws://127.0.0.1:{listener.bound_port}", listener.edge)


async def test_other_paths_are_not_found(served: Served) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(f"{served.ws_url}/ws/monitoring", open_timeout=5)
    assert info.value.response.status_code == 404


async def test_stopping_the_listener_does_not_mark_devices_offline(
    runtime: Runtime, factory: Factory, served: Served
) -> None:
    admin = await factory.user("admin")
    device = await make_device(served, admin)
    dev = uuid.UUID(device.id)
    own = DeviceListener(device_edge(runtime), "127.0.0.1", 0)
    await own.start()
    ws = await connected(Served(served.http, f"ws://127.0.0.1:{own.bound_port}", own.edge), device)
    assert (await runtime.presence.connectivity_of([dev]))[dev] == ONLINE
    await own.stop()
    code, reason = await closed_with(ws)
    assert (code, reason) == (1012, "server restart")  # as on the API's port: reconnect
    await asyncio.sleep(0.2)
    assert (await runtime.presence.connectivity_of([dev]))[dev] == ONLINE
    r = await served.http.get(f"/api/v1/devices/{device.id}/connectivity", headers=admin.headers)
    assert [e["connectivity"] for e in r.json()["items"]] == [ONLINE]


async def test_device_token_is_never_logged_even_at_debug(
    served: Served, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    protocol_log.setLevel(logging.DEBUG)  # the websockets server then logs every frame
    caplog.set_level(logging.DEBUG)
    try:
        admin = await factory.user("admin")
        device = await make_device(served, admin)
        ws = await connected(served, device, path_token=True)
        await ws.send(json.dumps({"type": "heartbeat", "battery_level": 1}))
        await recv(ws)
        await ws.close()
        with pytest.raises(InvalidStatus):
            await connect(f"{served.ws_url}/ws/device/{device.token}x", open_timeout=5)
        await asyncio.sleep(0.1)
    finally:
        protocol_log.setLevel(logging.WARNING)
    ours = [r for r in caplog.records if r.name.startswith("fieldwatch")]  # not the client's
    text = "".join(f"{r.getMessage()} {r.args}" for r in ours)
    assert "/ws/device/fwd_***" in text  # the handshake was logged, masked
    assert device.token not in text
    assert device.token[12:] not in text
