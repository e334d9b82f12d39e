"""Firmware updates over MQTT, the gateway's side: what devices and control services
publish about them, checked and translated for the update service.

- ``iot/devices/{id}/firmware/update/{update_id}/state`` (a device):
  ``{"state", "bytes"?, "reason"?, "detail"?}``;
- ``iot/devices/firmware/{id}/update`` (a trusted service): ``{"version", "checksum"?,
  "url"?}``, ``checksum`` a SHA-256 (hex, optionally ``sha256:``-prefixed), ``url``
  ignored (the server sends its own);
- the running version in register, heartbeat and status payloads (``firmware_version``,
  or ``firmware``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: The states a device may report (``completed`` is the server's to decide).
DEVICE_STATES = frozenset({"acknowledged", "downloading", "downloaded", "verified",
                           "installing", "rebooting", "failed"})  # fmt: skip
MAX_DETAIL = 1000
MAX_VERSION = 50
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REASON = re.compile(r"[a-z_]{1,30}")


@dataclass(frozen=True, slots=True)
class StateReport:
    update_id: str
    state: str
    bytes: int | None = None
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    version: str
    checksum: str | None = None


def state_report(update_id: str, payload: dict[str, Any]) -> StateReport:
    """A device's state report; ``ValueError`` says what is wrong with it."""
    state = payload.get("state")
    if state not in DEVICE_STATES:
        raise ValueError(f"state must be one of {', '.join(sorted(DEVICE_STATES))}")
    count = payload.get("bytes")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError("bytes must be a whole number ≥ 0")
    reason = payload.get("reason")
    if state == "failed":
        if not isinstance(reason, str) or not _REASON.fullmatch(reason):
            raise ValueError("a failed state needs its reason")
    elif reason is not None:
        raise ValueError("only a failed state has a reason")
    detail = payload.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise ValueError("detail must be text")
    return StateReport(update_id, state, count, reason, detail[:MAX_DETAIL] if detail else None)


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


def reported_version(payload: dict[str, Any]) -> str | None:
    """The firmware version a register, heartbeat or status payload says the device runs."""
    for key in ("firmware_version", "firmware"):
        value = payload.get(key)
        if isinstance(value, str) and 0 < len(value.strip()) <= MAX_VERSION:
            return value.strip()
    return None
