"""The command ledger and device configuration: the HTTP API, and delivery to a real
device over the WebSocket gateway (the real ``websockets`` client, a real server)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from conftest import Actor, Factory, Served, create_device, problem, serve_runtime
from fieldwatch.commands.messages import CommandAck, CommandResult, ConfigApplied, parse_report
from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.runtime import Runtime, build_runtime
from rabbit_helpers import exchange, rabbit_url  # noqa: F401 (fixtures)
from ws_helpers import Device, closed_with, connected, make_device, nothing_more, recv


async def send_command(http, actor: Actor, device_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("command", "ping")
    r = await http.post(f"/api/v1/devices/{device_id}/commands", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def command(http, actor: Actor, command_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/v1/commands/{command_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def status_becomes(http, actor: Actor, command_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            found = await command(http, actor, command_id)
            if found["status"] == status:
                return found
            await asyncio.sleep(0.02)


def path(transitions: list[dict[str, Any]]) -> list[str]:
    return [t["to_status"] for t in transitions]


# --- the unit of work's after-commit callbacks --------------------------------------------


async def test_after_commit_callbacks_run_only_after_a_commit(runtime: Runtime, caplog):
    ran: list[str] = []

    def note(name: str):
        async def callback() -> None:
            ran.append(name)

        return callback

    async def broken() -> None:
        raise RuntimeError("boom")

    async with runtime.uow() as uow:
        uow.after_commit(note("rolled back"))
        await uow.rollback()
        uow.after_commit(note("first"))
        uow.after_commit(broken)
        uow.after_commit(note("second"))
        assert ran == []  # not before the commit
        await uow.commit()  # the broken one is logged, not raised
        assert ran == ["first", "second"]
        await uow.commit()  # each runs once
    assert ran == ["first", "second"]
    assert "a callback failed after commit" in caplog.text
    async with runtime.uow() as uow:
        uow.after_commit(note("closed"))
    try:
        async with runtime.uow() as uow:
            uow.after_commit(note("failed"))
            raise LookupError
    except LookupError:
        pass
    assert ran == ["first", "second"]


def test_device_reports_are_parsed_into_typed_messages():
    cid = uuid.uuid4()
    assert parse_report("command_ack", {"command_id": str(cid)}) == CommandAck(cid)
    assert parse_report(
        "command_result", {"command_id": str(cid), "status": "failed", "result": {"error": "x"}}
    ) == CommandResult(cid, "failed", {"error": "x"})
    assert parse_report("config_applied", {"version": 3}) == ConfigApplied(3)
    bad = [
        ("command_ack", {}, "'command_ack' needs the command_id of a command."),
        ("command_ack", {"command_id": "nope"}, "'command_ack' needs the command_id"),
        ("command_result", {"command_id": str(cid)}, "status 'completed' or 'failed'"),
        ("command_result", {"command_id": str(cid), "status": "done"}, "'completed' or"),
        ("config_applied", {"version": "2"}, "config_applied needs the integer 'version'."),
        ("config_applied", {"version": True}, "integer 'version'"),
        ("config_applied", {"version": 0}, "integer 'version'"),
        ("telemetry", {}, "not a report about a command or configuration"),
    ]
    for kind, body, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_report(kind, body)


# --- the HTTP API -----------------------------------------------------------------------


async def test_queue_list_get_and_cancel(client, factory: Factory):
    op = await factory.user("operator", "acme")
    device = await create_device(client, op)
    first = await send_command(client, op, device["id"], command="reboot", params={"delay": 5})
    assert first["status"] == "pending" and first["command"] == "reboot"
    assert first["params"] == {"delay": 5} and first["attempts"] == 0 and first["ttl_s"] == 3600
    second = await send_command(client, op, device["id"], command="ping", ttl_s=60)

    r = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=op.headers)
    assert r.status_code == 200
    assert [c["command_id"] for c in r.json()["items"]] == [
        second["command_id"],
        first["command_id"],
    ]

    r = await client.post(f"/api/v1/commands/{first['command_id']}/cancel", headers=op.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    body = problem(
        await client.post(f"/api/v1/commands/{first['command_id']}/cancel", headers=op.headers),
        409,
    )
    assert body["status"] == 409 and "already cancelled" in body["detail"]

    found = await command(client, op, first["command_id"])
    assert path(found["transitions"]) == ["pending", "cancelled"]
    assert found["transitions"][1]["from_status"] == "pending"
    assert found["finished_at"] is not None

    r = await client.get(
        f"/api/v1/devices/{device['id']}/commands?status=pending", headers=op.headers
    )
    assert [c["command_id"] for c in r.json()["items"]] == [second["command_id"]]
    assert r.json()["total"] == 1


async def test_seed_path_idempotency_and_refusals(client, factory: Factory):
    op = await factory.user("operator", "acme")
    viewer = await factory.user("viewer", "acme")
    outsider = await factory.user("admin", "globex")
    device = await create_device(client, op)
    url = f"/api/v1/devices/{device['id']}/command"  # seed 000's path

    body = {"command": "set_reporting_interval", "params": {"interval": 30},
            "idempotency_key": "k1"}  # fmt: skip
    r = await client.post(url, json=body, headers=op.headers)
    assert r.status_code == 201, r.text
    again = await client.post(url, json=body, headers=op.headers)
    assert again.status_code == 200 and again.json()["command_id"] == r.json()["command_id"]
    changed = {**body, "params": {"interval": 60}}
    assert "k1" in problem(await client.post(url, json=changed, headers=op.headers), 409)["detail"]

    problem(await client.post(url, json={"command": "ping"}, headers=viewer.headers), 403)
    problem(await client.post(url, json={"command": "ping"}, headers=outsider.headers), 404)
    problem(
        await client.get(f"/api/v1/commands/{r.json()['command_id']}", headers=outsider.headers),
        404,
    )
    for bad in ({}, {"command": ""}, {"command": "x", "ttl_s": 0}, {"command": "a b"}):
        problem(await client.post(url, json=bad, headers=op.headers), 422)

    r = await client.put(f"/api/v1/devices/{device['id']}/retire", headers=op.headers)
    assert r.status_code == 200, r.text
    body = problem(await client.post(url, json={"command": "ping"}, headers=op.headers), 409)
    assert "retired" in body["detail"]
    r = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=op.headers)
    assert r.json()["total"] == 1  # the refused one left nothing behind


async def test_commands_expire_after_their_ttl(client, runtime: Runtime, factory: Factory):
    op = await factory.user("operator", "acme")
    device = await create_device(client, op)
    short = await send_command(client, op, device["id"], ttl_s=1)
    long = await send_command(client, op, device["id"], ttl_s=600)
    async with runtime.uow() as uow:  # an hour later, for the short one
        await uow.session.execute(
            update(Command)
            .where(Command.id == uuid.UUID(short["command_id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await uow.commit()
    await runtime.commands.sweep()
    expired = await command(client, op, short["command_id"])
    assert expired["status"] == "expired" and expired["reason"] == "expired"
    assert path(expired["transitions"]) == ["pending", "expired"]
    assert (await command(client, op, long["command_id"]))["status"] == "pending"
    r = await client.post(f"/api/v1/commands/{short['command_id']}/cancel", headers=op.headers)
    problem(r, 409)


# --- delivery over the WebSocket gateway --------------------------------------------------


async def expect_command(ws, command_id: str | None = None) -> dict[str, Any]:
    frame = await recv(ws)
    assert frame["type"] == "command", frame
    if command_id is not None:
        assert frame["command_id"] == command_id
    return frame


async def test_full_round_trip_over_websocket(served: Served, factory: Factory):
    op = await factory.user("operator", "acme")
    device = await make_device(served, op)
    ws = await connected(served, device)

    queued = await send_command(
        served.http, op, device.id, command="set_reporting_interval", params={"interval": 30}
    )
    # Connected to this process: claimed with its creation, the answer says "sent".
    assert (queued["status"], queued["attempts"]) == ("sent", 1)
    frame = await expect_command(ws, queued["command_id"])
    assert frame["command"] == "set_reporting_interval" and frame["params"] == {"interval": 30}
    assert frame["attempt"] == 1 and frame["expires_at"]
    assert (await command(served.http, op, queued["command_id"]))["status"] == "sent"

    await ws.send(json.dumps({"type": "command_ack", "id": 1, "command_id": queued["command_id"]}))
    reply = await recv(ws)
    assert (reply["type"], reply["ref"], reply["status"]) == ("ack", 1, "acknowledged")
    await ws.send(
        json.dumps(
            {
                "type": "command_result",
                "id": 2,
                "command_id": queued["command_id"],
                "status": "completed",
                "result": {"interval": 30},
            }
        )
    )
    reply = await recv(ws)
    assert (reply["ref"], reply["status"]) == (2, "completed")
    done = await command(served.http, op, queued["command_id"])
    assert done["status"] == "completed" and done["result"] == {"interval": 30}
    assert done["transport"] == "websocket" and done["attempts"] == 1
    assert path(done["transitions"]) == ["pending", "sent", "acknowledged", "completed"]
    assert all(t["at"] for t in done["transitions"])

    # A repeated result changes nothing; a failed result of another command keeps its error.
    await ws.send(
        json.dumps({"type": "command_result", "command_id": queued["command_id"],
                    "status": "failed", "result": {}})
    )  # fmt: skip
    assert (await recv(ws))["status"] == "completed"
    other = await send_command(served.http, op, device.id, command="selftest")
    await expect_command(ws, other["command_id"])
    await ws.send(
        json.dumps({"type": "command_result", "command_id": other["command_id"],
                    "status": "failed", "result": {"error": "sensor 2 missing"}})
    )  # fmt: skip
    assert (await recv(ws))["status"] == "failed"
    failed = await command(served.http, op, other["command_id"])
    assert failed["reason"] == "sensor 2 missing"
    assert path(failed["transitions"]) == ["pending", "sent", "failed"]
    await ws.close()


async def test_bad_ledger_frames_get_error_frames(served: Served, factory: Factory):
    op = await factory.user("operator", "acme")
    device = await make_device(served, op)
    other = await make_device(served, op)
    foreign = await send_command(served.http, op, other.id)
    ws = await connected(served, device)
    theirs = foreign["command_id"]
    cases = [
        ({"type": "command_ack", "id": "a"}, "invalid"),
        ({"type": "command_ack", "id": "b", "command_id": "nope"}, "invalid"),
        ({"type": "command_ack", "id": "c", "command_id": theirs}, "unknown_command"),
        ({"type": "command_result", "id": "d", "command_id": theirs,
          "status": "done"}, "invalid"),
        ({"type": "config_applied", "id": "e", "version": "2"}, "invalid"),
    ]  # fmt: skip
    for frame, code in cases:
        await ws.send(json.dumps(frame))
        error = await recv(ws)
        assert (error["type"], error["code"], error["ref"]) == ("error", code, frame["id"])
    # Another device's command was not touched.
    assert (await command(served.http, op, foreign["command_id"]))["status"] == "pending"
    await ws.close()


async def test_waiting_commands_arrive_in_order_on_connect(served: Served, factory: Factory):
    op = await factory.user("operator", "acme")
    device = await make_device(served, op)
    queued = [await send_command(served.http, op, device.id, command=f"step{i}") for i in range(4)]
    assert {q["status"] for q in queued} == {"pending"}  # not connected: they wait
    ids = [q["command_id"] for q in queued]
    cancelled = ids.pop(1)
    r = await served.http.post(f"/api/v1/commands/{cancelled}/cancel", headers=op.headers)
    assert r.status_code == 200
    ws = await connected(served, device)
    got = [(await expect_command(ws))["command_id"] for _ in ids]
    assert got == ids  # creation order, the cancelled one left out
    await nothing_more(ws)
    await ws.close()


async def test_a_burst_of_connects_gets_each_device_its_own_commands_and_config(
    served: Served, factory: Factory, runtime: Runtime
):
    """Devices connecting together are authenticated and looked up together: each still
    gets exactly what waited for it, in order, and nothing of another device's."""
    op = await factory.user("operator", "acme")
    devices = [await make_device(served, op) for _ in range(12)]
    waiting: dict[str, list[str]] = {}
    for n, device in enumerate(devices):
        waiting[device.id] = [
            (await send_command(served.http, op, device.id, command=f"c{n}-{i}"))["command_id"]
            for i in range(n % 3)
        ]
    configured = devices[::4]
    for device in configured:
        r = await served.http.put(f"/api/v1/devices/{device.id}/config",
                                  json={"unit": device.id}, headers=op.headers)  # fmt: skip
        assert r.status_code == 200, r.text
    auth_batches = lambda: served.edge.authenticator.batches  # noqa: E731
    before = auth_batches()
    sockets = await asyncio.gather(*(connected(served, d) for d in devices))
    assert auth_batches() - before < len(devices)  # they were checked in batches
    for device, ws in zip(devices, sockets, strict=True):
        got = [(await expect_command(ws))["command_id"] for _ in waiting[device.id]]
        assert got == waiting[device.id]
        if device in configured:
            frame = await recv(ws)
            assert frame["type"] == "config" and frame["config"] == {"unit": device.id}
        await nothing_more(ws)
        await ws.close()


async def test_a_lost_ack_is_resent_then_fails_undelivered(
    served: Served, runtime: Runtime, factory: Factory
):
    runtime.settings.command_ack_timeout_s = 1.0
    runtime.settings.command_max_attempts = 2
    await runtime.jobs.stop()  # only this test's sweeps: no background one races them
    op = await factory.user("operator", "acme")
    device = await make_device(served, op)
    ws = await connected(served, device)
    queued = await send_command(served.http, op, device.id)
    first = await expect_command(ws, queued["command_id"])
    assert first["attempt"] == 1

    await runtime.commands.sweep()  # not yet due: nothing is resent
    await nothing_more(ws)
    await asyncio.sleep(1.0)  # past the ack timeout
    await runtime.commands.sweep()
    again = await expect_command(ws, queued["command_id"])
    assert again["attempt"] == 2  # same command_id: the device deduplicates on it
    await asyncio.sleep(1.05)
    await runtime.commands.sweep()
    await nothing_more(ws)
    failed = await command(served.http, op, queued["command_id"])
    assert (failed["status"], failed["reason"], failed["attempts"]) == ("failed", "undelivered", 2)
    assert path(failed["transitions"]) == ["pending", "sent", "sent", "failed"]
    assert [t["detail"] for t in failed["transitions"]][1:3] == [
        "sent over websocket",
        "resent over websocket",
    ]
    await ws.close()


async def test_a_sent_unacked_command_is_resent_after_reconnect(served: Served, factory: Factory):
    op = await factory.user("operator", "acme")
    device = await make_device(served, op)
    ws = await connected(served, device)
    queued = await send_command(served.http, op, device.id)
    await expect_command(ws, queued["command_id"])
    await ws.close()  # dropped before it could ack

    ws = await connected(served, device)
    frame = await expect_command(ws, queued["command_id"])
    assert frame["attempt"] == 2
    await ws.send(json.dumps({"type": "command_ack", "command_id": queued["command_id"]}))
    assert (await recv(ws))["status"] == "acknowledged"
    await ws.close()
    ws = await connected(served, device)  # acknowledged: not sent again
    await nothing_more(ws)
    await ws.close()


async def test_commands_survive_a_restart(runtime: Runtime, factory: Factory):
    op = await factory.user("operator", "acme")
    async with serve_runtime(runtime) as first:
        device = await make_device(first, op)
        queued = [await send_command(first.http, op, device.id, command=f"c{i}") for i in (1, 2)]
    await runtime.close()  # the whole process state is gone; the database stays

    second_runtime = build_runtime(runtime.settings)
    try:
        async with serve_runtime(second_runtime) as second:
            ws = await connected(second, device)
            got = [(await expect_command(ws))["command_id"] for _ in queued]
            assert got == [q["command_id"] for q in queued]
            await ws.close()
    finally:
        await second_runtime.close()


async def test_retiring_a_device_closes_it_and_keeps_its_commands(served: Served, factory):
    op = await factory.user("operator", "acme")
    device: Device = await make_device(served, op)
    ws = await connected(served, device)
    queued = await send_command(served.http, op, device.id)
    await expect_command(ws, queued["command_id"])
    r = await served.http.put(f"/api/v1/devices/{device.id}/retire", headers=op.headers)
    assert r.status_code == 200
    assert (await closed_with(ws))[0] == 4001
    r = await served.http.post(
        f"/api/v1/devices/{device.id}/commands", json={"command": "ping"}, headers=op.headers
    )
    problem(r, 409)
    assert (await command(served.http, op, queued["command_id"]))["status"] == "sent"


# --- configuration --------------------------------------------------------------------------


async def test_config_round_trip(served: Served, factory: Factory):
    op = await factory.user("operator", "acme")
    viewer = await factory.user("viewer", "acme")
    device = await make_device(served, op)
    url = f"/api/v1/devices/{device.id}/config"

    r = await served.http.get(url, headers=viewer.headers)
    assert r.json()["desired_version"] == 0 and r.json()["in_sync"] is True

    desired = {"data_reporting_interval": 30, "led": {"color": "green", "on": True}}
    r = await served.http.put(url, json=desired, headers=op.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["desired_version"], body["reported_version"], body["in_sync"]) == (1, None, False)
    assert {(d["path"], d["change"]) for d in body["difference"]} == {
        ("data_reporting_interval", "added"),
        ("led", "added"),  # nothing reported yet: a whole object is missing
    }
    # The same document again does not bump the version.
    assert (await served.http.put(url, json=desired, headers=op.headers)).json()[
        "desired_version"
    ] == 1
    problem(await served.http.put(url, json=desired, headers=viewer.headers), 403)
    problem(await served.http.put(url, json=[1, 2], headers=op.headers), 422)

    ws = await connected(served, device)  # pushed on connect
    frame = await recv(ws)
    assert (frame["type"], frame["version"], frame["config"]) == ("config", 1, desired)
    assert frame["config_id"]
    await ws.send(json.dumps({"type": "config_applied", "id": 9, "version": 1}))
    assert (await recv(ws))["version"] == 1
    r = await served.http.get(url, headers=viewer.headers)
    body = r.json()
    assert (body["reported_version"], body["in_sync"], body["difference"]) == (1, True, [])
    assert body["reported"] == desired and body["pushed_version"] == 1

    changed = {"data_reporting_interval": 60, "led": {"color": "green"}}
    r = await served.http.put(url, json=changed, headers=op.headers)
    assert r.json()["desired_version"] == 2
    assert {(d["path"], d["change"]) for d in r.json()["difference"]} == {
        ("data_reporting_interval", "changed"),
        ("led.on", "removed"),
    }
    frame = await recv(ws)  # pushed at once to the connected device
    assert (frame["type"], frame["version"], frame["config"]) == ("config", 2, changed)
    await ws.send(json.dumps({"type": "config_applied", "version": 1}))  # late: ignored
    await recv(ws)
    assert (await served.http.get(url, headers=op.headers)).json()["reported_version"] == 1
    await ws.send(json.dumps({"type": "config_applied", "version": 2}))
    await recv(ws)
    r = await served.http.get(url, headers=op.headers)
    assert (r.json()["reported_version"], r.json()["in_sync"]) == (2, True)
    await ws.close()
    ws = await connected(served, device)  # in sync: nothing pushed on reconnect
    await nothing_more(ws)
    await ws.close()


# --- several processes --------------------------------------------------------------------


async def test_a_command_reaches_a_device_connected_to_another_process(
    settings,
    factory: Factory,
    rabbit_url: str,  # noqa: F811 (fixtures)
    exchange: str,  # noqa: F811 (fixtures)
):
    """Two server processes (runtimes) on one database and a RabbitMQ bus: the command is
    queued through one and delivered by the one that holds the device's session."""
    shared = settings.model_copy(update={"rabbitmq_url": rabbit_url, "rabbitmq_exchange": exchange})
    first, second = build_runtime(shared), build_runtime(shared)
    try:
        for rt in (first, second):
            await rt.start_bus()
        op = await factory.user("operator", "acme")
        async with serve_runtime(first) as a, serve_runtime(second) as b:
            device = await make_device(a, op)
            ws = await connected(a, device)
            queued = await send_command(b.http, op, device.id, command="ping")
            frame = await expect_command(ws, queued["command_id"])
            await ws.send(json.dumps({"type": "command_ack", "command_id": frame["command_id"]}))
            assert (await recv(ws))["status"] == "acknowledged"
            assert (await command(b.http, op, queued["command_id"]))["status"] == "acknowledged"
            await ws.close()
    finally:
        for rt in (first, second):
            await rt.close()
