"""What devices report about their commands and configuration, parsed once for every
transport: a command acknowledged, a command's result, a configuration applied.

The transports hand ``parse_report`` the message's type (``command_ack``,
``command_result``, ``config_applied``: the WebSocket frame type, the MQTT topic kind)
and its JSON object; a transport that carries a field elsewhere (MQTT: the command id in
the topic) puts it into the object first.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fieldwatch.commands.models import COMPLETED, FAILED

COMMAND_ACK = "command_ack"
COMMAND_RESULT = "command_result"
CONFIG_APPLIED = "config_applied"
REPORT_TYPES = frozenset({COMMAND_ACK, COMMAND_RESULT, CONFIG_APPLIED})


@dataclass(frozen=True, slots=True)
class CommandAck:
    """The device got the command."""

    command_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The device ran the command: ``status`` is ``completed`` or ``failed``."""

    command_id: uuid.UUID
    status: str
    result: Any = None


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """The device applied this version of its configuration."""

    version: int


DeviceReport = CommandAck | CommandResult | ConfigApplied


def parse_report(kind: str, body: Mapping[str, Any]) -> DeviceReport:
    """The typed message; ValueError, with a message meant for the device, when ``body``
    is not a valid message of type ``kind``."""
    if kind == CONFIG_APPLIED:
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError("config_applied needs the integer 'version'.")
        return ConfigApplied(version)
    if kind not in (COMMAND_ACK, COMMAND_RESULT):
        raise ValueError(f"{kind!r} is not a report about a command or configuration.")
    try:
        command_id = uuid.UUID(str(body.get("command_id")))
    except ValueError:
        raise ValueError(f"'{kind}' needs the command_id of a command.") from None
    if kind == COMMAND_ACK:
        return CommandAck(command_id)
    status = body.get("status")
    if status not in (COMPLETED, FAILED):
        raise ValueError("command_result needs status 'completed' or 'failed'.")
    return CommandResult(command_id, str(status), body.get("result"))
