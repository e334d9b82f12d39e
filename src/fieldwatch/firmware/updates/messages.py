"""What goes to a device (the update message) and what comes back (a state report),
the same on every transport; the device protocol's firmware section.

``params`` are stored with the ledger command, so the message is built from the command
alone; only ``url`` (signed and short-lived, made at send time) and ``attempt`` (the
update's tries) are added when it is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fieldwatch.commands.models import Command
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.firmware.artifacts.download import DownloadSigner, agent_download_path
from fieldwatch.firmware.artifacts.signing import manifest
from fieldwatch.firmware.models import FirmwareArtifact
from fieldwatch.firmware.updates.states import FAILED, REASONS, REPORTABLE

FRAME = "firmware_update"  # the WebSocket frame type; MQTT maps it to its topic
STATE_FRAME = "firmware_state"
MAX_DETAIL = 2000
MAX_VERSION = 50  # devices.firmware_version


def params(artifact: FirmwareArtifact, signing_key: str | None) -> dict[str, Any]:
    """The ledger command's params: everything the message needs."""
    return {
        "artifact_id": str(artifact.id),
        "version": artifact.version,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "signature": artifact.signature,
        "signing_key": signing_key,
        "manifest": manifest(artifact),
    }


def update_message(command: Command, *, url: str, attempt: int) -> dict[str, Any]:
    p = command.params
    return {
        "update_id": str(command.id),
        "command_id": str(command.id),
        "version": p["version"],
        "url": url,
        "download_path": agent_download_path(p["artifact_id"]),
        "checksum": p["sha256"],
        "sha256": p["sha256"],
        "size": p["size"],
        "signature": p.get("signature"),
        "signing_key": p.get("signing_key"),
        "manifest": p["manifest"],
        "attempt": attempt,
        "timestamp": utcnow().isoformat(),
        "expires_at": command.expires_at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class StateReport:
    """A device's ``firmware_state``: how far its update got."""

    update_id: uuid.UUID
    state: str
    bytes: int | None = None
    reason: str | None = None
    detail: str | None = None


def parse_state(body: Mapping[str, Any], update_id: Any = None) -> StateReport:
    """The typed report; ValueError, with a message meant for the device, when ``body``
    is not one. ``update_id``: where the transport carries it outside the body (a path,
    a topic)."""
    raw_id = body.get("update_id") if update_id is None else update_id
    try:
        parsed_id = uuid.UUID(str(raw_id))
    except ValueError:
        raise ValueError("firmware_state needs the update_id of an update.") from None
    state = body.get("state")
    if state not in REPORTABLE:
        raise ValueError(f"state must be one of {', '.join(REPORTABLE)}.")
    size = body.get("bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError("bytes is the count of bytes downloaded so far (an integer >= 0).")
    reason = body.get("reason")
    if state == FAILED and reason not in REASONS:
        raise ValueError(f"A failed update needs a reason: one of {', '.join(REASONS)}.")
    if state != FAILED and reason is not None:
        raise ValueError("reason goes only with state failed.")
    detail = body.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise ValueError("detail is text.")
    return StateReport(parsed_id, str(state), size, reason, detail[:MAX_DETAIL] if detail else None)


def url_for(settings: Settings, signer: DownloadSigner, command: Command) -> str:
    """A fresh signed download URL for the command's artifact and device, signed by the
    process's signer (``FirmwareFiles.signer``: the one that checks the links)."""
    artifact_id = uuid.UUID(command.params["artifact_id"])
    return signer.url(settings, artifact_id, command.device_id, utcnow())


def version_in(body: Mapping[str, Any]) -> str | None:
    """The running version a heartbeat or status carries (``firmware_version``, or
    ``firmware``), if any."""
    version = body.get("firmware_version", body.get("firmware"))
    if isinstance(version, str) and 0 < len(version) <= MAX_VERSION:
        return version
    return None
