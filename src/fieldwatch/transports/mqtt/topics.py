"""The MQTT topics of the device protocol: builders, a parser and topic-filter helpers.

Device to server::

    iot/devices/register/{id}            iot/devices/unregister/{id}
    iot/devices/heartbeat/{id}           iot/devices/data/{id}/{sensor_type}
    iot/devices/status/{id}              iot/devices/{id}/commands/{command_id}/ack
    iot/devices/{id}/commands/{command_id}/result
    iot/devices/{id}/config/{config_id}/applied
    iot/devices/{id}/firmware/update/{update_id}/state

Server to device::

    iot/devices/{id}/register/response   iot/devices/{id}/register/error
    iot/devices/{id}/commands/{command_id}
    iot/devices/{id}/config/{config_id}
    iot/devices/{id}/errors              (what the server refused, and why)
    iot/devices/{id}/firmware/update/{update_id}

Control (trusted services to server)::

    iot/devices/control/{id}/command     iot/devices/control/{id}/config
    iot/devices/firmware/{id}/update

A data message holds one reading, an array of readings, or (on the sensor type
``metrics``) several metrics at once: see ``transports.mqtt.data``. ``{id}`` is the
device id, except on a provisioning client's register topics: its serial number or a
one-time request id.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "iot/devices"

#: Device ids, serial numbers, command and config ids.
MAX_ID = 100
#: Sensor types (the telemetry metric name).
MAX_SEGMENT = 100
#: MQTT limits a topic to 65535 bytes of UTF-8; ours are much shorter.
MAX_TOPIC = 1024
#: The data topic's sensor type for several metrics at once (``transports.mqtt.data``).
METRICS = "metrics"

_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_ID}}}")
_FORBIDDEN = re.compile(r"[/+#\x00-\x1f\x7f]")


class Kind(StrEnum):
    """What a topic is for."""

    # device -> server
    REGISTER = "register"
    UNREGISTER = "unregister"
    HEARTBEAT = "heartbeat"
    DATA = "data"
    STATUS = "status"
    COMMAND_ACK = "command_ack"
    COMMAND_RESULT = "command_result"
    CONFIG_APPLIED = "config_applied"
    FIRMWARE_STATE = "firmware_state"
    # server -> device
    REGISTER_RESPONSE = "register_response"
    REGISTER_ERROR = "register_error"
    COMMAND = "command"
    CONFIG = "config"
    ERRORS = "errors"
    FIRMWARE_UPDATE = "firmware_update"
    # trusted services -> server
    CONTROL_COMMAND = "control_command"
    CONTROL_CONFIG = "control_config"
    CONTROL_FIRMWARE = "control_firmware"


DEVICE_TO_SERVER = frozenset(
    {Kind.REGISTER, Kind.UNREGISTER, Kind.HEARTBEAT, Kind.DATA, Kind.STATUS, Kind.COMMAND_ACK,
     Kind.COMMAND_RESULT, Kind.CONFIG_APPLIED, Kind.FIRMWARE_STATE}
)  # fmt: skip
SERVER_TO_DEVICE = frozenset(
    {Kind.REGISTER_RESPONSE, Kind.REGISTER_ERROR, Kind.COMMAND, Kind.CONFIG, Kind.ERRORS,
     Kind.FIRMWARE_UPDATE}
)  # fmt: skip
CONTROL = frozenset({Kind.CONTROL_COMMAND, Kind.CONTROL_CONFIG, Kind.CONTROL_FIRMWARE})

# device -> server topics of the form iot/devices/{kind}/{id}
_FLAT = {k.value: k for k in (Kind.REGISTER, Kind.UNREGISTER, Kind.HEARTBEAT, Kind.STATUS)}
_CONTROL = {"command": Kind.CONTROL_COMMAND, "config": Kind.CONTROL_CONFIG}
_REGISTER_REPLY = {"response": Kind.REGISTER_RESPONSE, "error": Kind.REGISTER_ERROR}
_COMMAND_SUFFIX: dict[str | None, Kind] = {
    None: Kind.COMMAND, "ack": Kind.COMMAND_ACK, "result": Kind.COMMAND_RESULT,
}  # fmt: skip
_CONFIG_SUFFIX: dict[str | None, Kind] = {None: Kind.CONFIG, "applied": Kind.CONFIG_APPLIED}
#: First levels below ``iot/devices/`` with a meaning of their own: never an id.
RESERVED = frozenset({*_FLAT, "data", "control", "firmware"})


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic. ``device_id`` is the serial number on register topics sent by a
    provisioning client."""

    kind: Kind
    device_id: str
    sensor_type: str | None = None
    command_id: str | None = None
    config_id: str | None = None
    update_id: str | None = None

    def __str__(self) -> str:
        return build(self)


# -- validation ------------------------------------------------------------------------


def is_valid_id(value: str) -> bool:
    """A device id, serial number, command id or config id: ``[A-Za-z0-9._-]{1,100}``,
    and not one of the ``RESERVED`` words (they would make topics ambiguous)."""
    return _ID.fullmatch(value) is not None and value not in RESERVED


def is_valid_segment(value: str) -> bool:
    """A free-form topic level (a sensor type): 1-100 characters, no ``/``, no wildcards,
    no control characters, not starting with ``$``."""
    return (
        0 < len(value) <= MAX_SEGMENT
        and not value.startswith("$")
        and _FORBIDDEN.search(value) is None
    )


def is_valid_topic(topic: str) -> bool:
    """A topic name a client may publish to: non-empty, no wildcards, no NUL."""
    return (
        0 < len(topic) <= MAX_TOPIC
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
    )


def is_valid_filter(topic_filter: str) -> bool:
    """A well-formed subscription filter: ``#`` only as the whole last level, ``+`` only
    as a whole level."""
    if not 0 < len(topic_filter) <= MAX_TOPIC or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not is_valid_id(value):
        raise ValueError(f"invalid {what} for an MQTT topic: {value!r}")
    return value


def _check_segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not is_valid_segment(value):
        raise ValueError(f"invalid {what} for an MQTT topic: {value!r}")
    return value


# -- builders --------------------------------------------------------------------------


def register(device_id: str) -> str:
    """``iot/devices/register/{id}`` (a device id or, from a provisioning client, a serial)."""
    return f"{PREFIX}/register/{_check_id(device_id, 'device id')}"


def unregister(device_id: str) -> str:
    return f"{PREFIX}/unregister/{_check_id(device_id, 'device id')}"


def heartbeat(device_id: str) -> str:
    return f"{PREFIX}/heartbeat/{_check_id(device_id, 'device id')}"


def data(device_id: str, sensor_type: str) -> str:
    device_id = _check_id(device_id, "device id")
    return f"{PREFIX}/data/{device_id}/{_check_segment(sensor_type, 'sensor type')}"


def status(device_id: str) -> str:
    """The device's status topic, also the topic of its last will."""
    return f"{PREFIX}/status/{_check_id(device_id, 'device id')}"


def command_ack(device_id: str, command_id: str) -> str:
    return f"{command(device_id, command_id)}/ack"


def command_result(device_id: str, command_id: str) -> str:
    return f"{command(device_id, command_id)}/result"


def config_applied(device_id: str, config_id: str) -> str:
    return f"{config(device_id, config_id)}/applied"


def register_response(device_id: str) -> str:
    return f"{PREFIX}/{_check_id(device_id, 'device id')}/register/response"


def register_error(device_id: str) -> str:
    return f"{PREFIX}/{_check_id(device_id, 'device id')}/register/error"


def command(device_id: str, command_id: str) -> str:
    device_id = _check_id(device_id, "device id")
    return f"{PREFIX}/{device_id}/commands/{_check_id(command_id, 'command id')}"


def config(device_id: str, config_id: str) -> str:
    device_id = _check_id(device_id, "device id")
    return f"{PREFIX}/{device_id}/config/{_check_id(config_id, 'config id')}"


def errors(device_id: str) -> str:
    """Where the server tells a device what it refused (rate limit, rejected readings)."""
    return f"{PREFIX}/{_check_id(device_id, 'device id')}/errors"


def control_command(device_id: str) -> str:
    return f"{PREFIX}/control/{_check_id(device_id, 'device id')}/command"


def control_config(device_id: str) -> str:
    return f"{PREFIX}/control/{_check_id(device_id, 'device id')}/config"


def firmware_update(device_id: str, update_id: str) -> str:
    """Where the server sends a firmware update message (update id = command id)."""
    device_id = _check_id(device_id, "device id")
    return f"{PREFIX}/{device_id}/firmware/update/{_check_id(update_id, 'update id')}"


def firmware_state(device_id: str, update_id: str) -> str:
    """Where a device reports the state of a firmware update."""
    return f"{firmware_update(device_id, update_id)}/state"


def control_firmware(device_id: str) -> str:
    """Where a trusted service asks for a device's firmware update (by version)."""
    return f"{PREFIX}/firmware/{_check_id(device_id, 'device id')}/update"


def build(topic: Topic) -> str:
    """The topic string of a parsed ``Topic``."""
    k, d = topic.kind, topic.device_id
    if k in _FLAT.values():
        return f"{PREFIX}/{k.value}/{_check_id(d, 'device id')}"
    by_id = {
        Kind.DATA: (data, topic.sensor_type),
        Kind.COMMAND: (command, topic.command_id),
        Kind.COMMAND_ACK: (command_ack, topic.command_id),
        Kind.COMMAND_RESULT: (command_result, topic.command_id),
        Kind.CONFIG: (config, topic.config_id),
        Kind.CONFIG_APPLIED: (config_applied, topic.config_id),
        Kind.FIRMWARE_UPDATE: (firmware_update, topic.update_id),
        Kind.FIRMWARE_STATE: (firmware_state, topic.update_id),
    }
    if k in by_id:
        builder, second = by_id[k]
        return builder(d, second or "")
    device_only = {
        Kind.REGISTER_RESPONSE: register_response,
        Kind.REGISTER_ERROR: register_error,
        Kind.ERRORS: errors,
        Kind.CONTROL_COMMAND: control_command,
        Kind.CONTROL_CONFIG: control_config,
        Kind.CONTROL_FIRMWARE: control_firmware,
    }
    return device_only[k](d)


# -- parser ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=65_536)  # a fleet repeats its topics: mostly one lookup
def parse(topic: str) -> Topic | None:
    """Parse a Fieldwatch topic; ``None`` for anything else (foreign topics, wildcards,
    invalid ids)."""
    if not isinstance(topic, str) or not topic.startswith(PREFIX + "/") or len(topic) > MAX_TOPIC:
        return None
    parts = topic[len(PREFIX) + 1 :].split("/")
    n, head = len(parts), parts[0]
    if n == 2 and head in _FLAT:
        return Topic(_FLAT[head], parts[1]) if is_valid_id(parts[1]) else None
    if head == "data":
        if n == 3 and is_valid_id(parts[1]) and is_valid_segment(parts[2]):
            return Topic(Kind.DATA, parts[1], sensor_type=parts[2])
        return None
    if head == "control":
        if n == 3 and parts[2] in _CONTROL and is_valid_id(parts[1]):
            return Topic(_CONTROL[parts[2]], parts[1])
        return None
    if head == "firmware":
        if n == 3 and parts[2] == "update" and is_valid_id(parts[1]):
            return Topic(Kind.CONTROL_FIRMWARE, parts[1])
        return None
    if n == 2 and parts[1] == "errors":
        return Topic(Kind.ERRORS, head) if is_valid_id(head) else None
    if n < 3 or not is_valid_id(head):
        return None
    section, item = parts[1], parts[2]
    if section == "firmware":
        return _parse_firmware(head, parts[2:])
    if section == "register":
        reply = _REGISTER_REPLY.get(item) if n == 3 else None
        return Topic(reply, head) if reply else None
    if section not in ("commands", "config") or n > 4 or not is_valid_id(item):
        return None
    suffix = parts[3] if n == 4 else None
    if section == "commands":
        kind = _COMMAND_SUFFIX.get(suffix)
        return Topic(kind, head, command_id=item) if kind else None
    kind = _CONFIG_SUFFIX.get(suffix)
    return Topic(kind, head, config_id=item) if kind else None


def _parse_firmware(device_id: str, rest: list[str]) -> Topic | None:
    """``update/{update_id}`` (server → device) or ``update/{update_id}/state``."""
    if rest[0] != "update" or len(rest) not in (2, 3) or not is_valid_id(rest[1]):
        return None
    if len(rest) == 2:
        return Topic(Kind.FIRMWARE_UPDATE, device_id, update_id=rest[1])
    return Topic(Kind.FIRMWARE_STATE, device_id, update_id=rest[1]) if rest[2] == "state" else None


# -- filters ---------------------------------------------------------------------------


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (MQTT 3.1.1 rules, including that
    wildcards at the first level never match ``$`` topics)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return i == len(f_levels) - 1
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def is_within(topic_filter: str, prefix: str) -> bool:
    """Whether every topic ``topic_filter`` can match lies strictly below ``prefix`` (a
    literal topic): the filter must repeat the prefix levels without wildcards and add at
    least one more level."""
    if not is_valid_filter(topic_filter):
        return False
    p_levels = prefix.split("/")
    f_levels = topic_filter.split("/")
    return len(f_levels) > len(p_levels) and f_levels[: len(p_levels)] == p_levels


def device_filter(device_id: str) -> str:
    """Everything the server sends to one device: ``iot/devices/{id}/#``."""
    return f"{PREFIX}/{_check_id(device_id, 'device id')}/#"


def provisioning_filter(serial: str) -> str:
    """The register replies to one provisioning client: ``iot/devices/{serial}/register/+``."""
    return f"{PREFIX}/{_check_id(serial, 'serial number')}/register/+"


#: What the server subscribes to: every device->server and control topic.
SERVER_FILTERS = (
    f"{PREFIX}/register/+",
    f"{PREFIX}/unregister/+",
    f"{PREFIX}/heartbeat/+",
    f"{PREFIX}/data/+/+",
    f"{PREFIX}/status/+",
    f"{PREFIX}/+/commands/+/ack",
    f"{PREFIX}/+/commands/+/result",
    f"{PREFIX}/+/config/+/applied",
    f"{PREFIX}/+/firmware/update/+/state",
    f"{PREFIX}/control/+/command",
    f"{PREFIX}/control/+/config",
    f"{PREFIX}/firmware/+/update",
)


def shared(topic_filter: str, group: str) -> str:
    """A shared subscription (``$share/{group}/{filter}``) so several server processes
    split the inbound load; needs a broker that supports them (Mosquitto 2 does)."""
    if not is_valid_id(group) or not is_valid_filter(topic_filter):
        raise ValueError("invalid shared subscription")
    return f"$share/{group}/{topic_filter}"
