"""A device's firmware update over the WebSocket gateway: a real server, the real
``websockets`` client as the device."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from conftest import Factory, Served, serve_runtime
from fieldwatch.commands.models import Command
from fieldwatch.runtime import Runtime, build_runtime
from firmware_helpers import (
    add_artifact,
    read_command,
    read_update,
    report,
    start_update,
    states,
    update_frame,
)
from ws_helpers import connected, make_device, nothing_more, recv


async def ready(served: Served, runtime: Runtime, factory: Factory, **device_fields):
    op = await factory.user("operator", "acme")
    device = await make_device(served, op)
    r = await served.http.patch(
        f"/api/v1/devices/{device.id}",
        json={"firmware_version": "1.0.0", **device_fields},
        headers=op.headers,
    )
    assert r.status_code == 200, r.text
    artifact = await add_artifact(runtime, op.workspace_id, "1.5.0")
    return op, device, artifact


async def test_every_state_in_order_then_completed_by_the_running_version(
    served: Served, runtime: Runtime, factory: Factory
):
    op, device, artifact = await ready(served, runtime, factory)
    ws = await connected(served, device)
    started = await start_update(served.http, op, device.id, version="1.5.0")
    assert (started["state"], started["tries"], started["target_version"]) == ("sent", 1, "1.5.0")
    assert started["from_version"] == "1.0.0"
    update_id = started["update_id"]

    message = await update_frame(ws)
    assert message["update_id"] == message["command_id"] == update_id
    assert (message["version"], message["attempt"], message["size"]) == ("1.5.0", 1, 1024 * 1024)
    assert message["checksum"] == message["sha256"] == artifact["sha256"]
    assert message["download_path"] == f"/api/v1/device/firmware/artifacts/{artifact['id']}"
    assert message["manifest"] == {
        "sha256": artifact["sha256"], "size": 1024 * 1024, "version": "1.5.0",
        "device_types": ["sensor"], "hardware_versions": [], "security_version": 1,
    }  # fmt: skip
    url = urlsplit(message["url"])
    assert url.path == f"/api/v1/firmware/download/{artifact['id']}"
    query = parse_qs(url.query)
    assert query["device"] == [device.id] and len(query["sig"][0]) == 64
    assert int(query["expires"][0]) > 0
    assert message["signature"] is None and message["expires_at"]

    for state, extra in [
        ("acknowledged", {}),
        ("downloading", {"bytes": 4096}),
        ("downloading", {"bytes": 8192}),
        ("downloaded", {"bytes": 1024 * 1024}),
        ("verified", {}),
        ("installing", {}),
        ("rebooting", {}),
    ]:
        answer = await report(ws, update_id, state, **extra)
        assert (answer["type"], answer["state"], answer["tries"]) == ("ack", state, 1)
    detail = await read_update(served.http, op, update_id)
    assert (detail["state"], detail["downloaded_bytes"]) == ("rebooting", 1024 * 1024)

    # Repeats and earlier states are answered and ignored; a device can not complete it.
    assert (await report(ws, update_id, "downloading", bytes=1))["state"] == "rebooting"
    assert (await report(ws, update_id, "acknowledged"))["state"] == "rebooting"
    refused = await report(ws, update_id, "completed")
    assert (refused["type"], refused["code"]) == ("error", "invalid")
    assert (await read_update(served.http, op, update_id))["state"] == "rebooting"

    # A heartbeat of the target version completes it.
    await ws.send(json.dumps({"type": "heartbeat", "id": "hb", "firmware_version": "1.5.0"}))
    assert (await recv(ws))["type"] == "ack"
    done = await read_update(served.http, op, update_id)
    assert (done["state"], done["reason"]) == ("completed", None) and done["finished_at"]
    assert states(done) == [
        "pending", "sent", "acknowledged", "downloading", "downloaded", "verified",
        "installing", "rebooting", "completed",
    ]  # fmt: skip
    command = await read_command(served.http, op, update_id)
    assert (command["command"], command["status"]) == ("firmware_update", "completed")
    r = await served.http.get(f"/api/v1/devices/{device.id}", headers=op.headers)
    assert r.json()["firmware_version"] == "1.5.0"
    # Reports after the end are answered and change nothing.
    assert (await report(ws, update_id, "rebooting"))["state"] == "completed"
    await ws.close()


async def test_coming_back_on_the_old_version_is_a_rollback(
    served: Served, runtime: Runtime, factory: Factory
):
    op, device, _ = await ready(served, runtime, factory)
    ws = await connected(served, device)
    update_id = (await start_update(served.http, op, device.id, version="1.5.0"))["update_id"]
    await update_frame(ws)
    # While installing, the old version in a status is normal (it still runs it).
    assert (await report(ws, update_id, "installing"))["state"] == "installing"
    await ws.send(json.dumps({"type": "status", "id": 1, "firmware": "1.0.0"}))
    assert (await recv(ws))["type"] == "ack"
    assert (await read_update(served.http, op, update_id))["state"] == "installing"
    assert (await report(ws, update_id, "rebooting"))["state"] == "rebooting"
    await ws.send(json.dumps({"type": "status", "id": 2, "firmware": "1.0.0"}))
    assert (await recv(ws))["type"] == "ack"
    failed = await read_update(served.http, op, update_id)
    assert (failed["state"], failed["reason"]) == ("failed", "rolled_back")
    assert (await read_command(served.http, op, update_id))["status"] == "failed"
    await ws.close()


async def test_each_state_times_out_into_a_retry_then_fails(
    served: Served, runtime: Runtime, factory: Factory
):
    settings = runtime.settings
    for name in ("acknowledge", "download", "install", "reboot"):
        setattr(settings, f"firmware_timeout_{name}_s", 0.0)
    op, device, _ = await ready(served, runtime, factory)
    ws = await connected(served, device)
    walk = ["sent", "acknowledged", "downloading", "verified", "installing", "rebooting"]
    update_id = (
        await start_update(served.http, op, device.id, version="1.5.0", max_tries=len(walk))
    )["update_id"]
    assert (await update_frame(ws))["attempt"] == 1
    for tries, state in enumerate(walk, start=1):
        if state != "sent":
            assert (await report(ws, update_id, state, bytes=100))["state"] == state
        assert await runtime.firmware.sweep() == 1
        detail = await read_update(served.http, op, update_id)
        if tries < len(walk):
            assert (detail["state"], detail["tries"]) == ("sent", tries + 1)
            assert detail["transitions"][-2]["detail"] == f"retry after timeout in {state}"
            resent = await update_frame(ws)
            assert (resent["update_id"], resent["attempt"]) == (update_id, tries + 1)
    assert (detail["state"], detail["reason"], detail["tries"]) == ("failed", "timeout", 6)
    assert detail["downloaded_bytes"] == 100  # where a resumed download starts
    assert (await read_command(served.http, op, update_id))["status"] == "failed"
    assert await runtime.firmware.sweep() == 0
    await nothing_more(ws)
    await ws.close()


async def test_retryable_failures_retry_at_once_others_end_it(
    served: Served, runtime: Runtime, factory: Factory
):
    op, device, _ = await ready(served, runtime, factory)
    ws = await connected(served, device)
    update_id = (await start_update(served.http, op, device.id, version="1.5.0", max_tries=2))[
        "update_id"
    ]
    await update_frame(ws)
    bad = await report(ws, update_id, "failed", reason="cosmic_rays")
    assert (bad["type"], bad["code"]) == ("error", "invalid")
    resent: list[dict] = []
    answer = await report(
        ws, update_id, "failed", reason="checksum_mismatch", detail="crc", resent=resent
    )
    assert (answer["state"], answer["tries"]) == ("sent", 2)
    assert [(m["update_id"], m["attempt"]) for m in resent] == [(update_id, 2)]
    answer = await report(ws, update_id, "failed", reason="download_failed")
    assert (answer["state"], answer["tries"]) == ("failed", 2)  # out of tries
    done = await read_update(served.http, op, update_id)
    assert (done["state"], done["reason"]) == ("failed", "download_failed")

    # Non-retryable: signature_invalid ends it with tries left.
    update_id = (await start_update(served.http, op, device.id, version="1.5.0"))["update_id"]
    await update_frame(ws)
    answer = await report(ws, update_id, "failed", reason="signature_invalid")
    assert (answer["state"], answer["tries"]) == ("failed", 1)
    unknown = await report(ws, str(uuid.uuid4()), "downloading")
    assert (unknown["type"], unknown["code"]) == ("error", "unknown_update")
    await nothing_more(ws)
    await ws.close()


async def test_an_offline_device_gets_it_when_it_connects_and_ack_counts(
    served: Served, runtime: Runtime, factory: Factory
):
    op, device, _ = await ready(served, runtime, factory)
    update_id = (await start_update(served.http, op, device.id, version="1.5.0"))["update_id"]
    assert (await read_update(served.http, op, update_id))["state"] == "pending"
    ws = await connected(served, device)
    message = await update_frame(ws)
    assert (message["update_id"], message["attempt"]) == (update_id, 1)
    assert (await read_update(served.http, op, update_id))["state"] == "sent"
    # A plain command_ack is an acknowledgement too.
    await ws.send(json.dumps({"type": "command_ack", "id": 1, "command_id": update_id}))
    assert (await recv(ws))["status"] == "acknowledged"
    assert (await read_update(served.http, op, update_id))["state"] == "acknowledged"
    await ws.close()


async def test_cancel_before_installing_only(served: Served, runtime: Runtime, factory: Factory):
    op, device, _ = await ready(served, runtime, factory)
    ws = await connected(served, device)
    update_id = (await start_update(served.http, op, device.id, version="1.5.0"))["update_id"]
    await update_frame(ws)
    await report(ws, update_id, "downloading", bytes=10)
    r = await served.http.post(f"/api/v1/firmware/updates/{update_id}/cancel", headers=op.headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert (await read_command(served.http, op, update_id))["status"] == "cancelled"
    assert (await report(ws, update_id, "downloaded"))["state"] == "cancelled"

    update_id = (await start_update(served.http, op, device.id, version="1.5.0"))["update_id"]
    await update_frame(ws)
    await report(ws, update_id, "installing")
    r = await served.http.post(f"/api/v1/firmware/updates/{update_id}/cancel", headers=op.headers)
    assert r.status_code == 409 and "installing" in r.json()["detail"]
    assert (await read_update(served.http, op, update_id))["state"] == "installing"
    await ws.close()


async def test_an_update_survives_a_restart(runtime: Runtime, factory: Factory):
    op = await factory.user("operator", "acme")
    async with serve_runtime(runtime) as first:
        device = await make_device(first, op)
        r = await first.http.patch(
            f"/api/v1/devices/{device.id}", json={"firmware_version": "1.0.0"}, headers=op.headers
        )
        assert r.status_code == 200
        await add_artifact(runtime, op.workspace_id, "1.5.0")
        ws = await connected(first, device)
        update_id = (await start_update(first.http, op, device.id, version="1.5.0"))["update_id"]
        await update_frame(ws)
        await ws.close()
    await runtime.close()  # the process state is gone; the database stays

    second_runtime = build_runtime(runtime.settings)
    try:
        async with serve_runtime(second_runtime) as second:
            assert (await read_update(second.http, op, update_id))["state"] == "sent"
            ws = await connected(second, device)
            message = await update_frame(ws)  # never acknowledged: sent again, once
            assert (message["update_id"], message["attempt"]) == (update_id, 1)
            await nothing_more(ws)
            assert (await report(ws, update_id, "rebooting"))["state"] == "rebooting"
            await ws.send(json.dumps({"type": "heartbeat", "id": 1, "firmware_version": "1.5.0"}))
            await recv(ws)
            assert (await read_update(second.http, op, update_id))["state"] == "completed"
            await ws.close()
        async with second_runtime.uow() as uow:
            commands = (await uow.session.scalars(select(Command))).all()
        assert [c.id for c in commands] == [uuid.UUID(update_id)]
    finally:
        await second_runtime.close()
