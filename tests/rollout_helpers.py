"""Rollout tests' parts: devices straight in the database, rollout bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from conftest import Actor
from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import FirmwareUpdate, RolloutDevice
from fieldwatch.runtime import Runtime
from firmware_helpers import add_artifact

ROLLOUTS = "/api/v1/firmware/rollouts"


async def make_artifact(
    runtime: Runtime, workspace_id: uuid.UUID, version: str = "2.0.0", **fields: Any
) -> uuid.UUID:
    """An artifact for sensors; its id."""
    return uuid.UUID((await add_artifact(runtime, workspace_id, version, **fields))["id"])


async def make_devices(
    runtime: Runtime, workspace_id: uuid.UUID, count: int, **fields: Any
) -> list[uuid.UUID]:
    """``count`` deployed sensors on 1.0.0 (unless ``fields`` say otherwise)."""
    values = {"type": "sensor", "firmware_version": "1.0.0", "status": "deployed", **fields}
    async with runtime.uow() as uow:
        devices = [
            Device(workspace_id=workspace_id, name=f"dev-{i:03d}-{uuid.uuid4().hex[:4]}", **values)
            for i in range(count)
        ]
        uow.session.add_all(devices)
        await uow.commit()
    return [d.id for d in devices]


async def open_update(
    runtime: Runtime, workspace_id: uuid.UUID, device_id: uuid.UUID, artifact_id: uuid.UUID
) -> None:
    """An update in progress for the device (as a single-device update would leave)."""
    now = utcnow()
    async with runtime.uow() as uow:
        command = Command(
            workspace_id=workspace_id, device_id=device_id, command="firmware_update",
            params={}, status="sent", ttl_s=3600, expires_at=now + timedelta(hours=1),
            attempts=1, max_attempts=5, created_by="test",
        )  # fmt: skip
        uow.session.add(command)
        await uow.session.flush()
        uow.session.add(
            FirmwareUpdate(
                command_id=command.id, workspace_id=workspace_id, device_id=device_id,
                artifact_id=artifact_id, target_version="2.0.0", state="downloading",
                max_tries=3,
            )
        )  # fmt: skip
        await uow.commit()


def body(artifact_id: uuid.UUID, device_ids: list[uuid.UUID], **fields: Any) -> dict[str, Any]:
    return {
        "name": "Spring release",
        "artifact_id": str(artifact_id),
        "target": {"device_ids": [str(d) for d in device_ids]},
        **fields,
    }


class Clock:
    """The engine's time, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def device_reports(
    runtime: Runtime, device_id: uuid.UUID, update_id: uuid.UUID, state: str, **fields: Any
) -> None:
    """What the device would report on its update, through the update service."""
    async with runtime.uow() as uow:
        await runtime.firmware.service(uow).report(device_id, update_id, state, **fields)
        await uow.commit()


async def device_runs(runtime: Runtime, device_id: uuid.UUID, version: str) -> None:
    """The device reports the version it runs (completes an update to it)."""
    async with runtime.uow() as uow:
        await runtime.firmware.service(uow).version_reported(device_id, version)
        await uow.commit()


async def updates_of(runtime: Runtime, rollout_id: str | uuid.UUID) -> list[FirmwareUpdate]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(FirmwareUpdate)
            .where(FirmwareUpdate.rollout_id == uuid.UUID(str(rollout_id)))
            .order_by(FirmwareUpdate.created_at)
        )
        return list(rows.all())


async def targets_of(runtime: Runtime, rollout_id: str | uuid.UUID) -> list[RolloutDevice]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(RolloutDevice)
            .where(RolloutDevice.rollout_id == uuid.UUID(str(rollout_id)))
            .order_by(RolloutDevice.wave, RolloutDevice.id)
        )
        return list(rows.all())


async def create(client, actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(ROLLOUTS, json=data, headers=actor.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def act(client, actor: Actor, rollout_id: str, action: str, status: int = 200) -> Any:
    r = await client.post(f"{ROLLOUTS}/{rollout_id}/{action}", headers=actor.headers)
    assert r.status_code == status, r.text
    return r.json()


async def launch(client, actor: Actor, data: dict[str, Any]) -> str:
    """Create and start a rollout; its id."""
    rollout_id = str((await create(client, actor, data))["id"])
    await act(client, actor, rollout_id, "start")
    return rollout_id


async def read(client, actor: Actor, rollout_id: str) -> dict[str, Any]:
    r = await client.get(f"{ROLLOUTS}/{rollout_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def rollout_events(runtime: Runtime) -> list[Event]:
    """The ``firmware.rollout_changed`` events published from now on."""
    seen: list[Event] = []

    async def keep(event: Event) -> None:
        seen.append(event)

    runtime.bus.subscribe("firmware.rollout_changed", keep)
    return seen


async def running(
    client, runtime: Runtime, actor: Actor, devices: int, **fields: Any
) -> tuple[Clock, list[uuid.UUID], str]:
    """``devices`` deployed sensors on 1.0.0, a rollout of 2.0.0 to them started, and the
    engine on a clock the test moves: (clock, device ids, rollout id)."""
    clock = Clock()
    runtime.rollouts.clock = clock
    artifact = await make_artifact(runtime, actor.workspace_id)
    ids = await make_devices(runtime, actor.workspace_id, devices)
    return clock, ids, await launch(client, actor, body(artifact, ids, **fields))
