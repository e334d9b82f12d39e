"""Who may publish and subscribe to what on the MQTT broker.

Four kinds of principal:

* ``device`` (name = device id): publishes only its own device->server topics (its last
  will goes to its status topic) and subscribes only to filters inside
  ``iot/devices/{id}/``;
* ``provision`` (name = S, its MQTT client id: the serial number it registers, or a
  one-time request id): publishes only ``iot/devices/register/{S}`` and subscribes only
  inside ``iot/devices/{S}/register/``;
* ``control`` (a trusted service): publishes control topics (commands, configuration,
  firmware updates) for any device, subscribes to nothing;
* ``service`` (Fieldwatch's own gateway client): everything.

The same rules, as Mosquitto dynamic-security role ACLs, come from ``dynsec_role_acls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.topics import PREFIX, Kind

PrincipalKind = Literal["device", "provision", "control", "service"]
Action = Literal["publish", "subscribe"]
PRINCIPAL_KINDS: tuple[PrincipalKind, ...] = ("device", "provision", "control", "service")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated MQTT client: a device (name = device id), a provisioning client
    (name = serial number), a control service or Fieldwatch's gateway (name = username)."""

    kind: PrincipalKind
    name: str

    def __post_init__(self) -> None:
        if self.kind not in PRINCIPAL_KINDS:
            raise ValueError(f"unknown principal kind: {self.kind!r}")


def may_publish(principal: Principal, topic: str) -> bool:
    """Whether ``principal`` may publish to ``topic`` (a topic name, no wildcards)."""
    if not topics.is_valid_topic(topic):
        return False
    if principal.kind == "service":
        return True
    parsed = topics.parse(topic)
    if parsed is None:
        return False
    if principal.kind == "device":
        return parsed.kind in topics.DEVICE_TO_SERVER and parsed.device_id == principal.name
    if principal.kind == "provision":
        return parsed.kind is Kind.REGISTER and parsed.device_id == principal.name
    return parsed.kind in topics.CONTROL  # control


def may_subscribe(principal: Principal, topic_filter: str) -> bool:
    """Whether ``principal`` may subscribe to ``topic_filter``. Shared (``$share/``) and
    other ``$`` filters are for the gateway only."""
    if not topics.is_valid_filter(topic_filter):
        return False
    if principal.kind == "service":
        return True
    if topic_filter.startswith("$") or not topics.is_valid_id(principal.name):
        return False
    if principal.kind == "device":
        return topics.is_within(topic_filter, f"{PREFIX}/{principal.name}")
    if principal.kind == "provision":
        return topics.is_within(topic_filter, f"{PREFIX}/{principal.name}/register")
    return False  # control


def is_allowed(principal: Principal, action: Action, topic: str) -> bool:
    """``may_publish`` or ``may_subscribe`` by ``action``."""
    if action == "publish":
        return may_publish(principal, topic)
    if action == "subscribe":
        return may_subscribe(principal, topic)
    return False


# -- Mosquitto dynamic security --------------------------------------------------------


def _acl(acltype: str, topic: str, *, allow: bool = True, priority: int = 0) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": allow, "priority": priority}


def dynsec_role_acls(kind: PrincipalKind, name: str | None = None) -> list[dict[str, Any]]:
    """The rules of ``kind`` as Mosquitto dynamic-security role ACLs (for ``createRole`` /
    ``modifyRole``), assuming default access "deny" for publishClientSend,
    publishClientReceive and subscribe.

    Mosquitto 2.0's dynamic security does not substitute ``%u``/``%c`` in ACL topics, so
    a device role is per device (``name`` = device id, literal topics). The provisioning
    role cannot tie topics to the client id: it allows the register topics of any id and
    denies the wildcard subscriptions that would read every id's replies (Mosquitto 2.0
    matches a subscription's wildcards against the ACL's as plain text), so a client
    reads only the replies of ids it can name: through such a broker a register comes
    under a random one-time request id (see ``gateway``).
    """
    p = PREFIX
    if kind == "device":
        if name is None or not topics.is_valid_id(name):
            raise ValueError(f"a device role needs a valid device id, got {name!r}")
        publish = [
            topics.register(name),
            topics.unregister(name),
            topics.heartbeat(name),
            topics.status(name),
            f"{p}/data/{name}/+",
            f"{p}/{name}/commands/+/ack",
            f"{p}/{name}/commands/+/result",
            f"{p}/{name}/config/+/applied",
            f"{p}/{name}/firmware/update/+/state",
        ]
        return [
            *(_acl("publishClientSend", t) for t in publish),
            _acl("subscribePattern", f"{p}/{name}/#"),
            _acl("publishClientReceive", f"{p}/{name}/#"),
        ]
    if kind == "provision":
        replies = f"{p}/+/register/+"
        sniffing = [f"{p}/+/register/{last}" for last in ("+", "#", "response", "error")]
        return [
            _acl("publishClientSend", f"{p}/register/+"),
            *(_acl("subscribeLiteral", s, allow=False, priority=10) for s in sniffing),
            _acl("subscribePattern", replies),
            _acl("publishClientReceive", replies),
        ]
    if kind == "control":
        return [
            _acl("publishClientSend", f"{p}/control/+/command"),
            _acl("publishClientSend", f"{p}/control/+/config"),
            _acl("publishClientSend", f"{p}/firmware/+/update"),
        ]
    if kind == "service":
        return [
            _acl("publishClientSend", "#"),
            _acl("subscribePattern", "#"),
            _acl("subscribePattern", "$share/#"),
            _acl("publishClientReceive", "#"),
        ]
    raise ValueError(f"unknown principal kind: {kind!r}")
