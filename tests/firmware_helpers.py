"""Firmware updates for the tests: artifacts straight in the database (their upload API
is tested on its own), starting and reading updates over HTTP, a device's side over the
WebSocket gateway."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection

from conftest import Actor
from fieldwatch.firmware.models import FirmwareArtifact
from fieldwatch.runtime import Runtime
from ws_helpers import recv


async def add_artifact(
    runtime: Runtime, workspace_id: uuid.UUID, version: str = "1.5.0", **fields: Any
) -> dict[str, Any]:
    content = f"firmware {version}".encode()
    values: dict[str, Any] = {
        "workspace_id": workspace_id,
        "version": version,
        "device_types": ["sensor"],
        "hardware_versions": [],
        "security_version": 1,
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": 1024 * 1024,
        "filename": f"fw-{version}.bin",
        "content_type": "application/octet-stream",
        "created_by": "test",
        **fields,
    }
    async with runtime.uow() as uow:
        artifact = FirmwareArtifact(**values)
        uow.session.add(artifact)
        await uow.commit()
        return {"id": str(artifact.id), **{k: v for k, v in values.items() if k != "workspace_id"}}


async def start_update(http, actor: Actor, device_id: str, **body: Any) -> dict[str, Any]:
    r = await http.post(
        f"/api/v1/devices/{device_id}/firmware-update", json=body, headers=actor.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def read_update(http, actor: Actor, update_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/v1/firmware/updates/{update_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def read_command(http, actor: Actor, command_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/v1/commands/{command_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def update_frame(ws: ClientConnection) -> dict[str, Any]:
    """The next frame, which must be a firmware update."""
    frame = await recv(ws)
    assert frame["type"] == "firmware_update", frame
    return frame


async def report(
    ws: ClientConnection,
    update_id: str,
    state: str,
    *,
    resent: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict:
    """Send a ``firmware_state`` frame; the server's answer. ``resent`` collects the
    update messages that come first (a retry resends the update as it commits)."""
    ref = uuid.uuid4().hex[:8]
    frame = {"type": "firmware_state", "id": ref, "update_id": update_id, "state": state}
    await ws.send(json.dumps({**frame, **fields}))
    answer = await recv(ws)
    while resent is not None and answer["type"] == "firmware_update":
        resent.append(answer)
        answer = await recv(ws)
    assert answer["ref"] == ref, answer
    return answer


def states(detail: dict[str, Any]) -> list[str]:
    return [t["to_status"] for t in detail["transitions"]]
