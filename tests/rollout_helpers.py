"""Rollout tests' parts: artifacts and devices straight in the database, rollout bodies."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.devices.models import Device
from fieldwatch.firmware.models import FirmwareArtifact, FirmwareUpdate
from fieldwatch.runtime import Runtime

ROLLOUTS = "/api/v1/firmware/rollouts"


async def make_artifact(
    runtime: Runtime, workspace_id: uuid.UUID, version: str = "2.0.0", **fields: Any
) -> FirmwareArtifact:
    data = f"firmware {version}".encode()
    values: dict[str, Any] = {
        "device_types": ["sensor"],
        "hardware_versions": [],
        "min_from_version": None,
        "security_version": 0,
        **fields,
    }
    async with runtime.uow() as uow:
        artifact = FirmwareArtifact(
            workspace_id=workspace_id, version=version, sha256=hashlib.sha256(data).hexdigest(),
            size=len(data), filename=f"fw-{version}.bin", content_type="application/octet-stream",
            created_by="test", **values,
        )  # fmt: skip
        uow.session.add(artifact)
        await uow.commit()
    return artifact


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
