"""Starting, refusing, listing and ending firmware updates (the service and operator API)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import update

from conftest import Actor, Factory, create_device, problem
from fieldwatch.commands.events import COMMAND_UPDATED
from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import FirmwareArtifact, FirmwarePolicy
from fieldwatch.firmware.updates.errors import UpdateRunning
from fieldwatch.firmware.updates.events import UPDATE_CHANGED
from fieldwatch.firmware.updates.messages import parse_state
from fieldwatch.runtime import Runtime
from firmware_helpers import add_artifact, read_command, read_update, start_update


async def device_on(client: httpx.AsyncClient, op: Actor, version: str | None, **fields: Any):
    return await create_device(client, op, firmware_version=version, **fields)


def start(client: httpx.AsyncClient, op: Actor, device_id: str, **body: Any):
    return client.post(
        f"/api/v1/devices/{device_id}/firmware-update", json=body, headers=op.headers
    )


async def test_refusals(client: httpx.AsyncClient, runtime: Runtime, factory: Factory):
    op = await factory.user("operator", "acme")
    ws = op.workspace_id
    await add_artifact(runtime, ws, "2.0.0", security_version=3)
    await add_artifact(runtime, ws, "1.5.0", security_version=1)
    await add_artifact(runtime, ws, "3.0.0", device_types=["gateway"], security_version=3)
    on_two = await device_on(client, op, "2.0.0")
    on_one = await device_on(client, op, "1.5.0")
    cases = [
        (on_two, "1.5.0", "anti_rollback"),
        (on_one, "1.5.0", "already_on_version"),
        (on_one, "3.0.0", "incompatible_type"),
    ]
    for device, version, reason in cases:
        body = problem(await start(client, op, device["id"], version=version), 409)
        assert body["reason"] == reason, body
    problem(await start(client, op, on_one["id"], version="9.9.9"), 404)
    problem(await start(client, op, on_one["id"]), 422)  # neither id nor version
    both = {"version": "2.0.0", "artifact_id": str(uuid.uuid4())}
    problem(await start(client, op, on_one["id"], **both), 422)

    # One update at a time per device.
    first = await start_update(client, op, on_one["id"], version="2.0.0")
    body = problem(await start(client, op, on_one["id"], version="2.0.0"), 409)
    assert body["update_id"] == first["update_id"]

    # Another workspace's artifact and device are not found.
    other = await factory.user("operator", "globex")
    theirs = await add_artifact(runtime, other.workspace_id, "2.0.0")
    problem(await start(client, op, on_two["id"], artifact_id=theirs["id"]), 404)
    problem(await start(client, other, on_one["id"], version="2.0.0"), 404)
    viewer = await factory.user("viewer", "acme")
    problem(await start(client, viewer, on_two["id"], version="1.5.0"), 403)

    # A retired device takes none.
    retired = await device_on(client, op, "1.0.0")
    r = await client.put(f"/api/v1/devices/{retired['id']}/retire", headers=op.headers)
    assert r.status_code == 200, r.text
    assert problem(await start(client, op, retired["id"], version="2.0.0"), 409)["reason"] == (
        "retired"
    )


async def test_the_policy_can_require_signed_firmware(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    device = await device_on(client, operator, "1.0.0")
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    signed = await add_artifact(runtime, operator.workspace_id, "1.6.0", signature="c2lnbmF0dXJl")
    async with runtime.uow() as uow:
        uow.session.add(FirmwarePolicy(workspace_id=operator.workspace_id, require_signed=True))
        await uow.commit()
    body = problem(await start(client, operator, device["id"], version="1.5.0"), 409)
    assert body["reason"] == "unsigned"
    started = await start_update(client, operator, device["id"], artifact_id=signed["id"])
    command = await read_command(client, operator, started["update_id"])
    assert command["params"]["signature"] == "c2lnbmF0dXJl"
    body = problem(await start(client, operator, device["id"], version="1.6.0"), 409)
    assert (body["reason"], body["update_id"]) == ("update_running", started["update_id"])
    assert set(command["params"]) == {
        "artifact_id", "version", "sha256", "size", "signature", "signing_key", "manifest"
    }  # fmt: skip


async def test_the_service_interface_and_its_events(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    runtime.bus.subscribe(UPDATE_CHANGED, record)
    runtime.bus.subscribe(COMMAND_UPDATED, record)
    device = await device_on(client, operator, "1.0.0")
    artifact = await add_artifact(runtime, operator.workspace_id, "1.5.0")
    expires_at = utcnow() + timedelta(hours=2)
    async with runtime.uow() as uow:
        found = await uow.session.get(Device, uuid.UUID(device["id"]))
        art = await uow.session.get(FirmwareArtifact, uuid.UUID(artifact["id"]))
        assert found is not None and art is not None
        service = runtime.firmware.service(uow)
        started = await service.start(
            workspace_id=operator.workspace_id, device=found, artifact=art,
            created_by="rollout:test", wave=2, max_tries=4, expires_at=expires_at,
        )  # fmt: skip
        assert seen == []  # only after commit
        await uow.commit()
    assert (started.state, started.wave, started.max_tries, started.tries) == ("pending", 2, 4, 1)
    assert [e.payload for e in seen] == [
        {
            "update_id": str(started.command_id), "device_id": device["id"], "rollout_id": None,
            "wave": 2, "state": "pending", "from_state": None, "reason": None, "tries": 1,
            "version": "1.5.0", "downloaded_bytes": 0, "at": started.updated_at.isoformat(),
        }
    ]  # fmt: skip
    command = await read_command(client, operator, str(started.command_id))
    assert command["created_by"] == "rollout:test"
    stored = datetime.fromisoformat(command["expires_at"])
    assert abs((stored - expires_at).total_seconds()) <= 1  # the TTL in whole seconds
    async with runtime.uow() as uow:
        again = runtime.firmware.service(uow)
        found = await uow.session.get(Device, uuid.UUID(device["id"]))
        art = await uow.session.get(FirmwareArtifact, uuid.UUID(artifact["id"]))
        assert found is not None and art is not None
        with pytest.raises(UpdateRunning):
            await again.start(
                workspace_id=operator.workspace_id, device=found, artifact=art, created_by="x"
            )


async def test_listing_and_filters(client: httpx.AsyncClient, runtime: Runtime, factory: Factory):
    op = await factory.user("operator", "acme")
    await add_artifact(runtime, op.workspace_id, "1.5.0")
    a = await device_on(client, op, "1.0.0")
    b = await device_on(client, op, "1.0.0")
    first = await start_update(client, op, a["id"], version="1.5.0")
    second = await start_update(client, op, b["id"], version="1.5.0")
    r = await client.post(
        f"/api/v1/firmware/updates/{second['update_id']}/cancel", headers=op.headers
    )
    assert r.json()["state"] == "cancelled"
    r = await client.get("/api/v1/firmware/updates", headers=op.headers)
    page = r.json()
    assert page["total"] == 2
    assert [u["update_id"] for u in page["items"]] == [second["update_id"], first["update_id"]]
    r = await client.get(
        "/api/v1/firmware/updates", params={"device_id": a["id"]}, headers=op.headers
    )
    assert [u["update_id"] for u in r.json()["items"]] == [first["update_id"]]
    r = await client.get(
        "/api/v1/firmware/updates", params={"state": "cancelled"}, headers=op.headers
    )
    assert [u["update_id"] for u in r.json()["items"]] == [second["update_id"]]
    problem(await client.get("/api/v1/firmware/updates?state=done", headers=op.headers), 422)
    other = await factory.user("viewer", "globex")
    r = await client.get("/api/v1/firmware/updates", headers=other.headers)
    assert r.json()["total"] == 0
    r = await client.get(f"/api/v1/firmware/updates/{first['update_id']}", headers=other.headers)
    problem(r, 404)
    # Once over, an update is not cancelled again.
    r = await client.post(
        f"/api/v1/firmware/updates/{second['update_id']}/cancel", headers=op.headers
    )
    assert problem(r, 409)["state"] == "cancelled"


async def test_the_ledger_expiring_the_command_expires_the_update(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    device = await device_on(client, operator, "1.0.0")
    update_id = (await start_update(client, operator, device["id"], version="1.5.0"))["update_id"]
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(Command)
            .where(Command.id == uuid.UUID(update_id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await uow.commit()
    await runtime.commands.sweep()
    expired = await read_update(client, operator, update_id)
    assert (expired["state"], expired["finished_at"] is not None) == ("expired", True)
    assert (await read_command(client, operator, update_id))["status"] == "expired"
    # Then the device may get another.
    await start_update(client, operator, device["id"], version="1.5.0")


async def test_a_report_past_acknowledged_is_one_statement_on_postgresql(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    """On PostgreSQL a step forward past ``acknowledged`` (and a download's progress) is
    one statement that commits on its own: no read first, no BEGIN or COMMIT; the
    transition is kept all the same. Anything else, and SQLite, take a transaction."""
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    runtime.bus.subscribe(UPDATE_CHANGED, record)
    runtime.bus.subscribe(COMMAND_UPDATED, record)
    device = await device_on(client, operator, "1.0.0")
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    started = await start_update(client, operator, device["id"], version="1.5.0")
    device_id, update_id = uuid.UUID(device["id"]), uuid.UUID(started["update_id"])
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    async def send(state: str, **extra: Any) -> tuple[str, int, list[str]]:
        statements.clear()
        body = {"state": state, **extra}
        update = await runtime.firmware.report(device_id, parse_state(body, update_id))
        assert update is not None
        return update.state, update.downloaded_bytes, list(statements)

    postgres = runtime.engine.dialect.name == "postgresql"
    sa_event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        state, _, acked = await send("acknowledged")  # from pending: the ledger's too
        assert state == "acknowledged"
        assert acked == ["WITH"] if postgres else len(acked) >= 3
        command = await read_command(client, operator, started["update_id"])
        assert (command["status"], command["acknowledged_at"] is not None) == ("acknowledged", True)
        assert await send("downloading", bytes=10) == (
            "downloading", 10, ["WITH"] if postgres else ["SELECT", "UPDATE", "INSERT"]
        )  # fmt: skip
        assert await send("downloading", bytes=20) == (
            "downloading", 20, ["WITH"] if postgres else ["SELECT", "UPDATE"]
        )  # fmt: skip
        # A repeated report changes nothing: on PostgreSQL the statement found no row,
        # then the transaction read the update; one from before is not even tried so.
        again = await send("downloading")
        assert again == ("downloading", 20, ["WITH", "SELECT"] if postgres else ["SELECT"])
        late = ["WITH", "SELECT"] if postgres else ["SELECT"]
        assert await send("acknowledged") == ("downloading", 20, late)
        assert (await send("failed", reason="install_failed"))[0] == "failed"
    finally:
        sa_event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    detail = await read_update(client, operator, started["update_id"])
    assert [t["to_status"] for t in detail["transitions"]][-3:] == [
        "acknowledged", "downloading", "failed"
    ]  # fmt: skip
    acknowledged = detail["transitions"][-3]
    assert (acknowledged["from_status"], acknowledged["detail"]) == (
        "pending", "acknowledged by the device"
    )  # fmt: skip
    moved = detail["transitions"][-2]
    assert (moved["from_status"], moved["detail"]) == ("acknowledged", "reported by the device")
    command = await read_command(client, operator, started["update_id"])
    assert moved["attempt"] == detail["transitions"][-3]["attempt"] == command["attempts"]
    ledger = [e for e in seen if e.type == COMMAND_UPDATED]
    assert [(e.payload.get("from_status"), e.payload.get("status")) for e in ledger][:1] == [
        ("pending", "acknowledged")
    ]
    seen = [e for e in seen if e.type == UPDATE_CHANGED]
    assert [(e.payload["from_state"], e.payload["state"]) for e in seen][-4:] == [
        ("pending", "acknowledged"), ("acknowledged", "downloading"),
        ("downloading", "downloading"), ("downloading", "failed"),
    ]  # fmt: skip
    assert seen[-2].payload["downloaded_bytes"] == 20
