"""Socket.IO push to dashboards, with a real python-socketio client against a real
uvicorn server (Socket.IO at /ws/monitoring in front of the FastAPI app)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import socketio
import uvicorn

from conftest import Actor, Factory, create_device
from fieldwatch.app import create_asgi_app
from fieldwatch.core.events import Event
from fieldwatch.core.settings import Settings
from fieldwatch.realtime import RealtimeServer
from fieldwatch.realtime.messages import merge_telemetry
from fieldwatch.runtime import Runtime
from firmware_helpers import add_artifact
from integration_helpers import connect_as, import_ring, oura_standin
from telemetry_helpers import device_with_token, iso

PATH = "ws/monitoring"
QUIET_S = 0.5  # how long "receives nothing" waits
WAIT_S = 10.0  # the most any expected message may take
NAMES = (
    "telemetry", "presence", "device_status", "alert", "command", "config", "firmware", "sync",
)  # fmt: skip


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


@dataclass
class Served:
    url: str
    http: httpx.AsyncClient  # real HTTP to the uvicorn server
    realtime: RealtimeServer


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    asgi = create_asgi_app(runtime=runtime)
    config = uvicorn.Config(asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # start-up failed: raise its error
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        realtime = asgi.fastapi_app.state.realtime
        assert realtime.runtime is runtime and realtime.coalescer.running
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Served(url, http, realtime)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    assert realtime.runtime is None and not realtime.coalescer.running  # lifespan stopped it


class Dashboard:
    """A Socket.IO client that records what it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.errors: list[Any] = []
        self.disconnected = asyncio.Event()
        self._arrived = asyncio.Event()
        for name in NAMES:
            self.sio.on(name, self._recorder(name))
        self.sio.on("connect_error", self._on_error)
        self.sio.on("disconnect", self._on_disconnect)

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def record(data: dict[str, Any]) -> None:
            self.received[name].append(data)
            self._arrived.set()

        return record

    async def _on_error(self, data: Any = None) -> None:
        self.errors.append(data)

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnected.set()

    async def connect(
        self,
        url: str,
        auth: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        transports: list[str] | None = None,
    ) -> None:
        await self.sio.connect(
            url,
            auth=auth,
            headers=headers or {},
            socketio_path=PATH,
            transports=transports or ["websocket"],
            wait_timeout=10,
        )

    async def wait_for(
        self,
        name: str,
        match: Callable[[dict[str, Any]], bool] = lambda m: True,
    ) -> dict[str, Any]:
        """The first ``name`` message that matches, waiting at most ``WAIT_S`` seconds."""

        async def find() -> dict[str, Any]:
            while True:
                self._arrived.clear()
                for message in self.received[name]:
                    if match(message):
                        return message
                await self._arrived.wait()

        return await asyncio.wait_for(find(), WAIT_S)

    async def quiet(self, name: str, match: Callable[[dict[str, Any]], bool]) -> list[dict]:
        """Wait ``QUIET_S`` and return the ``name`` messages that match (expected: none)."""
        await asyncio.sleep(QUIET_S)
        return [m for m in self.received[name] if match(m)]

    async def quiet_all(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, list]:
        """Wait ``QUIET_S`` and return the messages of any name that match (expected: none)."""
        await asyncio.sleep(QUIET_S)
        found = {name: [m for m in self.received[name] if match(m)] for name in NAMES}
        return {name: messages for name, messages in found.items() if messages}

    async def emit(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=10)


@pytest.fixture
async def dashboards(served: Served) -> AsyncIterator[Callable[[], Dashboard]]:
    made: list[Dashboard] = []

    def make() -> Dashboard:
        made.append(Dashboard())
        return made[-1]

    yield make
    # Over long-polling, a client-side disconnect leaves the server's pending poll open
    # until the ping timeout (python-engineio): end those connections from the server.
    for dashboard in made:
        if dashboard.sio.connected and dashboard.sio.transport() == "polling":
            await served.realtime.drop(dashboard.sio.get_sid())
            await asyncio.wait_for(dashboard.disconnected.wait(), WAIT_S)
        await dashboard.sio.disconnect()
    # The server forgets them (its disconnect handler ran) before it is shut down.
    await eventually(lambda: served.realtime.connected == 0)


async def connected(served: Served, make: Callable[[], Dashboard], actor: Actor) -> Dashboard:
    dashboard = make()
    await dashboard.connect(served.url, auth={"token": actor.token})
    return dashboard


def reading(metric: str, value: float, at: datetime | None = None) -> dict[str, Any]:
    at = at or datetime.now(UTC) - timedelta(seconds=1)
    return {"data_type": metric, "values": [{"timestamp": iso(at), "value": value}]}


async def upload(
    http: httpx.AsyncClient, device: dict, token: dict[str, str], body: dict[str, Any]
) -> None:
    r = await http.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(body["values"]), r.text


def about(device: dict) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["device_id"] == device["id"]


# --- connecting -------------------------------------------------------------------------


async def refusal(served: Served, make: Callable[[], Dashboard], **how: Any) -> str:
    dashboard = make()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await dashboard.connect(served.url, **how)
    assert len(dashboard.errors) == 1, dashboard.errors
    assert not dashboard.sio.connected
    return str(dashboard.errors[0]["message"])


async def test_connecting_needs_a_valid_dashboard_credential(served, dashboards, factory: Factory):
    op = await factory.user("operator", "acme")
    device, device_token = await device_with_token(served.http, op)

    assert "Authentication required" in await refusal(served, dashboards)
    assert "Authentication required" in await refusal(served, dashboards, auth={"token": " "})
    assert await refusal(served, dashboards, auth={"token": "not-a-jwt"}) == (
        "Invalid access token."
    )
    bad_key = {"Authorization": "Bearer fwk_" + "x" * 40}
    assert await refusal(served, dashboards, headers=bad_key) == "Invalid API key."
    message = await refusal(served, dashboards, headers=device_token)
    assert message.startswith("Device tokens cannot open dashboard connections")
    token = device_token["Authorization"].removeprefix("Bearer ")
    assert "Device tokens" in await refusal(served, dashboards, auth={"token": token})
    elsewhere = await refusal(served, dashboards, auth={"token": op.token, "workspace": "nope"})
    assert elsewhere.startswith("No workspace 'nope'")
    assert served.realtime.connected == 0

    # The same user's token works, with the workspace by name or id, or as a header.
    ok = dashboards()
    await ok.connect(served.url, auth={"token": op.token, "workspace": "acme"})
    header = dashboards()
    await header.connect(served.url, headers={**op.headers, "X-Workspace": str(op.workspace_id)})
    assert ok.sio.connected and header.sio.connected and served.realtime.connected == 2
    assert device["workspace_id"] == str(op.workspace_id)


async def test_an_api_key_connects_over_polling_and_websocket(served, dashboards, factory):
    admin = await factory.user("admin", "acme")
    r = await served.http.post(
        "/api/v1/api-keys", json={"name": "wallboard"}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    device, token = await device_with_token(served.http, admin)

    polling = dashboards()
    await polling.connect(
        served.url, headers={"Authorization": f"Bearer {key}"}, transports=["polling"]
    )
    websocket = dashboards()
    await websocket.connect(served.url, auth={"token": key})
    await upload(served.http, device, token, reading("temperature", 21.5))
    for dashboard in (polling, websocket):
        got = await dashboard.wait_for("telemetry", about(device))
        assert got["metrics"]["temperature"]["value"] == 21.5
    assert polling.sio.transport() == "polling" and websocket.sio.transport() == "websocket"


# --- what arrives --------------------------------------------------------------------------


async def test_telemetry_reaches_its_own_workspace_only(served, dashboards, factory: Factory):
    alice = await factory.user("viewer", "acme")
    bob = await factory.user("admin", "globex")
    op = await factory.user("operator", "acme")
    device, token = await device_with_token(served.http, op)
    mine, theirs = (
        await connected(served, dashboards, alice),
        await connected(served, dashboards, bob),
    )

    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    await upload(served.http, device, token, reading("temperature", 22.5, at))
    got = await mine.wait_for("telemetry", about(device))
    assert got["type"] == "telemetry.received"
    assert got["workspace_id"] == str(op.workspace_id)
    assert got["metrics"] == {"temperature": {"timestamp": at.isoformat(), "value": 22.5}}
    assert datetime.fromisoformat(got["occurred_at"]) > at
    assert await theirs.quiet_all(lambda m: True) == {}


async def test_presence_arrives_when_a_device_first_sends_data(served, dashboards, factory):
    op = await factory.user("operator", "acme")
    device, token = await device_with_token(served.http, op)
    dashboard = await connected(served, dashboards, op)

    await upload(served.http, device, token, reading("humidity", 40.0))
    got = await dashboard.wait_for("presence", about(device))
    assert got["type"] == "device.presence_changed"
    assert got["connectivity"] == "online"
    assert got["workspace_id"] == str(op.workspace_id)
    assert got["last_seen"] is not None
    assert len(dashboard.received["presence"]) == 1


async def test_device_status_arrives_after_a_deploy(served, dashboards, factory: Factory):
    op = await factory.user("operator", "acme")
    other = await factory.user("operator", "globex")
    device = await create_device(served.http, op, name="Pump 7")
    dashboard = await connected(served, dashboards, op)
    outsider = await connected(served, dashboards, other)

    r = await served.http.put(
        f"/api/v1/devices/{device['id']}/deploy",
        json={"location": "Factory A - Floor 3"},
        headers=op.headers,
    )
    assert r.status_code == 200, r.text
    got = await dashboard.wait_for("device_status", about(device))
    assert got["type"] == "device.status_changed"
    assert (got["old_status"], got["new_status"]) == ("in_stock", "deployed")
    assert got["device_type"] == "sensor" and got["name"] == "Pump 7"
    assert got["location"] == "Factory A - Floor 3"
    assert await outsider.quiet("device_status", lambda m: True) == []


async def test_an_alert_on_the_bus_reaches_the_workspace(served, dashboards, runtime, factory):
    op = await factory.user("operator", "acme")
    other = await factory.user("operator", "globex")
    device = await create_device(served.http, op)
    dashboard = await connected(served, dashboards, op)
    outsider = await connected(served, dashboards, other)

    device_id = uuid.UUID(device["id"])
    event = Event(
        type="alert.raised",
        workspace_id=op.workspace_id,
        subject_id=device_id,
        payload={"device_id": str(device_id), "alert_id": "a-1", "severity": "critical"},
    )
    await runtime.bus.publish(event)
    got = await dashboard.wait_for("alert", about(device))
    assert got == {
        "device_id": device["id"],
        "alert_id": "a-1",
        "severity": "critical",
        "workspace_id": str(op.workspace_id),
        "type": "alert.raised",
        "occurred_at": event.occurred_at.isoformat(),
    }
    assert await outsider.quiet("alert", lambda m: True) == []


# --- narrowing to devices ------------------------------------------------------------------


async def test_command_changes_reach_the_workspace(served, dashboards, factory: Factory):
    op = await factory.user("operator", "acme")
    other = await factory.user("operator", "globex")
    device = await create_device(served.http, op)
    dashboard = await connected(served, dashboards, op)
    outsider = await connected(served, dashboards, other)

    r = await served.http.post(
        f"/api/v1/devices/{device['id']}/commands", json={"command": "ping"}, headers=op.headers
    )
    assert r.status_code == 201, r.text
    command_id = r.json()["command_id"]
    created = await dashboard.wait_for("command", lambda m: m["command_id"] == command_id)
    assert (created["type"], created["status"]) == ("command.created", "pending")
    r = await served.http.post(f"/api/v1/commands/{command_id}/cancel", headers=op.headers)
    assert r.status_code == 200, r.text
    cancelled = await dashboard.wait_for("command", lambda m: m["status"] == "cancelled")
    assert (cancelled["type"], cancelled["from_status"]) == ("command.updated", "pending")
    assert cancelled["device_id"] == device["id"]

    r = await served.http.put(
        f"/api/v1/devices/{device['id']}/config", json={"led": "on"}, headers=op.headers
    )
    assert r.status_code == 200, r.text
    config = await dashboard.wait_for("config", about(device))
    assert (config["type"], config["desired_version"]) == ("config.updated", 1)
    assert await outsider.quiet_all(lambda m: True) == {}


async def test_narrowing_to_chosen_devices(served, dashboards, factory: Factory):
    op = await factory.user("operator", "acme")
    rival = await factory.user("operator", "globex")
    watched, watched_token = await device_with_token(served.http, op, name="watched")
    ignored, ignored_token = await device_with_token(served.http, op, name="ignored")
    foreign, foreign_token = await device_with_token(served.http, rival, name="foreign")
    dashboard = await connected(served, dashboards, op)

    ack = await dashboard.emit(
        "subscribe", {"devices": [watched["id"], foreign["id"], "not-an-id"]}
    )
    assert ack == {
        "workspace_id": str(op.workspace_id),
        "devices": [watched["id"]],
        "events": None,
        "unknown": [foreign["id"], "not-an-id"],
    }
    # In order over one connection: the foreign and the ignored device's pushes (if they
    # were sent at all) would come before the watched one's.
    await upload(served.http, foreign, foreign_token, reading("temperature", 1.0))
    await upload(served.http, ignored, ignored_token, reading("temperature", 2.0))
    await upload(served.http, watched, watched_token, reading("temperature", 3.0))
    got = await dashboard.wait_for("telemetry")
    assert (got["device_id"], got["metrics"]["temperature"]["value"]) == (watched["id"], 3.0)
    await dashboard.wait_for("presence", about(watched))
    assert await dashboard.quiet_all(lambda m: m["device_id"] != watched["id"]) == {}

    # Only another workspace's devices: subscribed to nothing, never to theirs.
    ack = await dashboard.emit("subscribe", {"devices": [foreign["id"]]})
    assert ack["devices"] == [] and ack["unknown"] == [foreign["id"]]
    bad = await dashboard.emit("subscribe", {"devices": "all"})
    assert "error" in bad and bad["devices"] == []

    # Back to the whole workspace.
    ack = await dashboard.emit("unsubscribe", None)
    assert ack == {"workspace_id": str(op.workspace_id), "devices": None, "events": None}
    await upload(served.http, ignored, ignored_token, reading("temperature", 4.0))
    got = await dashboard.wait_for("telemetry", about(ignored))
    assert got["metrics"]["temperature"]["value"] == 4.0
    ack = await dashboard.emit("subscribe", {"devices": [ignored["id"]]})
    assert ack["devices"] == [ignored["id"]] and ack["unknown"] == []
    ack = await dashboard.emit("subscribe", {"devices": None})
    assert ack["devices"] is None


# --- narrowing to event names --------------------------------------------------------------


def alert_on_bus(actor: Actor, device: dict, alert_id: str) -> Event:
    return Event(
        type="alert.raised",
        workspace_id=actor.workspace_id,
        subject_id=uuid.UUID(device["id"]),
        payload={"device_id": device["id"], "alert_id": alert_id, "severity": "major"},
    )


async def test_narrowing_to_alerts_keeps_the_telemetry_away(served, dashboards, runtime, factory):
    op = await factory.user("operator", "acme")
    device, token = await device_with_token(served.http, op)
    alerts_page = await connected(served, dashboards, op)
    everything = await connected(served, dashboards, op)  # the control: gets it all

    ack = await alerts_page.emit("subscribe", {"devices": None, "events": ["alert"]})
    assert ack == {"workspace_id": str(op.workspace_id), "devices": None, "events": ["alert"]}
    await upload(served.http, device, token, reading("temperature", 21.0))
    await everything.wait_for("telemetry", about(device))
    await everything.wait_for("presence", about(device))
    await runtime.bus.publish(alert_on_bus(op, device, "a-1"))
    got = await alerts_page.wait_for("alert", about(device))
    assert got["alert_id"] == "a-1" and got["type"] == "alert.raised"
    await everything.wait_for("alert", about(device))
    assert await alerts_page.quiet_all(lambda m: m["type"] != "alert.raised") == {}
    assert len(alerts_page.received["alert"]) == 1  # once, not once per room

    # Devices and events together: one device's alerts and telemetry, nothing else.
    other, other_token = await device_with_token(served.http, op, name="other")
    ack = await alerts_page.emit(
        "subscribe", {"devices": [device["id"]], "events": ["telemetry", "alert"]}
    )
    assert (ack["devices"], ack["events"], ack["unknown"]) == (
        [device["id"]],
        ["alert", "telemetry"],
        [],
    )
    await runtime.bus.publish(alert_on_bus(op, other, "a-other"))
    await upload(served.http, other, other_token, reading("temperature", 5.0))
    await upload(served.http, device, token, reading("temperature", 22.0))
    got = await alerts_page.wait_for("telemetry")
    assert (got["device_id"], got["metrics"]["temperature"]["value"]) == (device["id"], 22.0)
    await runtime.bus.publish(alert_on_bus(op, device, "a-2"))
    await alerts_page.wait_for("alert", lambda m: m["alert_id"] == "a-2")
    await everything.wait_for("presence", about(other))
    assert await alerts_page.quiet_all(about(other)) == {}
    assert alerts_page.received["presence"] == []

    # Back to everything: a missing "events" is every event.
    ack = await alerts_page.emit("subscribe", {})
    assert (ack["devices"], ack["events"]) == (None, None)
    await upload(served.http, other, other_token, reading("temperature", 6.0))
    got = await alerts_page.wait_for("telemetry", about(other))
    assert got["metrics"]["temperature"]["value"] == 6.0


async def test_a_bad_event_filter_is_refused_and_changes_nothing(served, dashboards, factory):
    op = await factory.user("operator", "acme")
    dashboard = await connected(served, dashboards, op)
    ack = await dashboard.emit("subscribe", {"events": ["alert"]})
    assert ack["events"] == ["alert"]
    for bad in ({"events": ["alert", "secrets"]}, {"events": "alert"}, {"events": [1]}):
        refused = await dashboard.emit("subscribe", bad)
        assert "events among telemetry, presence" in refused["error"], refused
        assert (refused["devices"], refused["events"]) == (None, ["alert"])
    ack = await dashboard.emit("subscribe", {"events": []})  # nothing at all
    assert ack["events"] == []
    ack = await dashboard.emit("unsubscribe", None)
    assert (ack["devices"], ack["events"]) == (None, None)


# --- coalescing ----------------------------------------------------------------------------


def test_merging_keeps_the_newest_value_of_each_metric():
    pending = {
        "device_id": "d",
        "occurred_at": "1",
        "metrics": {
            "t": {"timestamp": "2026-01-01T00:00:02+00:00", "value": 2},
            "h": {"timestamp": "2026-01-01T00:00:01+00:00", "value": 50},
        },
    }
    newer = {
        "device_id": "d",
        "occurred_at": "2",
        "metrics": {
            "t": {"timestamp": "2026-01-01T00:00:01+00:00", "value": 1},  # late arrival
            "p": {"timestamp": "2026-01-01T00:00:03+00:00", "value": 1013},
        },
    }
    merged = merge_telemetry(pending, newer)
    assert merged["occurred_at"] == "2"
    assert {name: point["value"] for name, point in merged["metrics"].items()} == {
        "t": 2,
        "h": 50,
        "p": 1013,
    }


async def test_a_chatty_device_is_coalesced(served, dashboards, factory: Factory):
    op = await factory.user("operator", "acme")
    device, token = await device_with_token(served.http, op)
    dashboard = await connected(served, dashboards, op)
    interval = served.realtime.coalescer.interval_s
    assert interval == 0.25  # the default FIELDWATCH_REALTIME_COALESCE_MS

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    bodies = [
        reading("temperature", float(i), base + timedelta(milliseconds=10 * i)) for i in range(50)
    ]
    bodies.insert(1, reading("humidity", 55.0, base))
    started = time.monotonic()
    # A few at a time, as a device sends: more concurrent uploads than the database
    # pool holds stall the write path (a separate issue).
    gate = asyncio.Semaphore(4)

    async def send(body: dict[str, Any]) -> None:
        async with gate:
            await upload(served.http, device, token, body)

    await asyncio.gather(*(send(b) for b in bodies))
    elapsed = time.monotonic() - started

    def temperature(m: dict[str, Any]) -> float | None:
        return m["metrics"].get("temperature", {}).get("value")

    newest = await dashboard.wait_for("telemetry", lambda m: temperature(m) == 49.0)
    await dashboard.quiet("telemetry", lambda m: False)  # let any straggler arrive
    messages = dashboard.received["telemetry"]
    total = time.monotonic() - started
    # 51 uploads: at most one push per interval (the first one at once).
    assert 1 <= len(messages) < 10, (len(messages), elapsed)
    assert len(messages) <= total / interval + 1, (len(messages), total)
    # The last push holds the newest temperature, and so does any push after the first
    # one holding it: an older reading never replaces a newer one.
    with_temperature = [m for m in messages if "temperature" in m["metrics"]]
    # (the humidity upload may be the last to commit, in a push of its own)
    assert with_temperature[-1]["metrics"]["temperature"] == {
        "timestamp": (base + timedelta(milliseconds=490)).isoformat(),
        "value": 49.0,
    }
    after = with_temperature[with_temperature.index(newest) :]
    assert [temperature(m) for m in after] == [49.0] * len(after)
    # No metric is lost to coalescing: the single humidity reading was pushed.
    assert any(m["metrics"].get("humidity", {}).get("value") == 55.0 for m in messages)
    assert {m["device_id"] for m in messages} == {device["id"]}
    assert {m["workspace_id"] for m in messages} == {str(op.workspace_id)}


# --- credentials changing ------------------------------------------------------------------


async def test_logging_out_drops_the_connection(served, dashboards, factory: Factory):
    leaving = await factory.user("viewer", "acme")
    staying = await factory.user("viewer", "acme")
    gone, kept = (
        await connected(served, dashboards, leaving),
        await connected(served, dashboards, staying),
    )

    r = await served.http.post("/api/v1/auth/logout", headers=leaving.headers)
    assert r.status_code == 204, r.text
    await asyncio.wait_for(gone.disconnected.wait(), 10)
    assert not gone.sio.connected
    await asyncio.sleep(QUIET_S)
    assert kept.sio.connected and served.realtime.connected == 1


async def test_a_refused_connection_says_why_in_connect_error(served: Served, dashboards):
    dashboard = dashboards()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await dashboard.connect(served.url, auth={"token": "not-a-jwt"})
    assert dashboard.errors == [
        {"message": "Invalid access token.", "data": {"code": "unauthorized", "status": 401}}
    ]
    missing = dashboards()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await missing.connect(served.url)
    assert missing.errors[0]["data"] == {"code": "unauthorized", "status": 401}
    assert missing.errors[0]["message"].startswith("Authentication required")


async def test_firmware_update_changes_reach_the_workspace(
    served, dashboards, runtime, factory: Factory
):
    op = await factory.user("operator", "acme")
    device = await create_device(served.http, op, firmware_version="1.0.0")
    await add_artifact(runtime, op.workspace_id, "1.5.0")
    dashboard = await connected(served, dashboards, op)
    r = await served.http.post(
        f"/api/v1/devices/{device['id']}/firmware-update", json={"version": "1.5.0"},
        headers=op.headers,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    update_id = r.json()["update_id"]
    started = await dashboard.wait_for("firmware", lambda m: m["update_id"] == update_id)
    assert (started["type"], started["state"], started["version"]) == (
        "firmware.update_changed", "pending", "1.5.0"
    )  # fmt: skip
    assert started["device_id"] == device["id"]
    r = await served.http.post(f"/api/v1/firmware/updates/{update_id}/cancel", headers=op.headers)
    assert r.status_code == 200, r.text
    cancelled = await dashboard.wait_for("firmware", lambda m: m["state"] == "cancelled")
    assert (cancelled["update_id"], cancelled["from_state"]) == (update_id, "pending")


async def test_sync_changes_reach_the_workspace(
    served, dashboards, runtime, factory: Factory, settings: Settings
):
    op = await factory.user("operator", "acme")
    async with oura_standin(settings, users=["rt-user"]):
        connection = await connect_as(served.http, op, "rt-user")
        device = await import_ring(served.http, op, connection, auto_sync=False,
                                   sync_historical_days=1)  # fmt: skip
        dashboard = await connected(served, dashboards, op)
        r = await served.http.post(f"/api/v1/devices/{device}/sync", headers=op.headers)
        assert r.status_code == 202, r.text
        await runtime.sync.run_once()
        done = await dashboard.wait_for("sync", lambda m: m["status"] == "completed")
    assert (done["type"], done["sync_id"], done["device_id"]) == (
        "integration.sync_changed", r.json()["sync_id"], device)  # fmt: skip
    assert done["records_synced"] > 0 and done["from_status"] == "running"
