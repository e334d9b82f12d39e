"""Firmware updates over MQTT, the gateway's side: the topic of update messages, and
what devices and control services publish about updates, handed to the update service.

- ``iot/devices/{id}/firmware/update/{update_id}``: the update message (the ledger's
  ``firmware_update`` command, sent by ``MqttChannel``);
- ``iot/devices/{id}/firmware/update/{update_id}/state`` (a device):
  ``{"state", "bytes"?, "reason"?, "detail"?}``, the update id from the topic;
- ``iot/devices/firmware/{id}/update`` (a trusted service): ``{"version", "checksum"?,
  "url"?}``; ``checksum`` a SHA-256 (hex, optionally ``sha256:``-prefixed) that must be
  the artifact's; ``url`` ignored (the device downloads from Fieldwatch);
- the running version in register, heartbeat and status payloads (``firmware_version``,
  or ``firmware``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from fieldwatch.auth.principal import Principal
from fieldwatch.firmware.updates.messages import MAX_VERSION, parse_state
from fieldwatch.firmware.updates.service import UpdateService
from fieldwatch.firmware.updates.sweeper import FirmwareUpdates
from fieldwatch.transports.mqtt import topics

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    version: str
    checksum: str | None = None


def update_topic(device_id: str, message: dict[str, Any]) -> str:
    """Where an update message goes (``channel.FRAME_TOPICS``)."""
    return topics.firmware_update(device_id, str(message["update_id"]))


def update_request(payload: dict[str, Any]) -> UpdateRequest:
    """A control service's request; ``ValueError`` says what is wrong with it."""
    version = payload.get("version")
    if not isinstance(version, str) or not 0 < len(version.strip()) <= MAX_VERSION:
        raise ValueError(f"version is required (text of 1-{MAX_VERSION} characters)")
    checksum = payload.get("checksum")
    if checksum is None:
        return UpdateRequest(version.strip())
    if not isinstance(checksum, str):
        raise ValueError("checksum must be a SHA-256 in hex")
    digest = checksum.strip().lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(digest):
        raise ValueError("checksum must be a SHA-256 in hex")
    return UpdateRequest(version.strip(), digest)


async def state_reported(
    firmware: FirmwareUpdates, device_id: uuid.UUID, update_id: str, payload: dict[str, Any]
) -> None:
    """A device's state report, committed; ``ValueError`` for a malformed one or an
    update the device does not have."""
    report = parse_state(payload, update_id=update_id)
    if await firmware.report(device_id, report) is None:
        raise ValueError(f"device {device_id} has no firmware update {update_id}")


async def start_requested(
    service: UpdateService, principal: Principal, device_id: uuid.UUID, payload: dict[str, Any]
) -> None:
    """A control service asks for an update to a version of the workspace's firmware
    (the same checks as through the API; refusals raise)."""
    request = update_request(payload)
    artifact = await service.artifact(principal, None, request.version)
    if request.checksum is not None and request.checksum != artifact.sha256.lower():
        raise ValueError(f"checksum is not that of firmware {request.version}")
    await service.start_for(
        principal, device_id, artifact_id=artifact.id, version=None, ttl_s=None, max_tries=None
    )
