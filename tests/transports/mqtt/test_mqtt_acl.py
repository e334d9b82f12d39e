"""MQTT topics and access rules (pure functions, no broker)."""

from __future__ import annotations

import pytest

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import (
    Principal,
    dynsec_role_acls,
    is_allowed,
    may_publish,
    may_subscribe,
)
from fieldwatch.transports.mqtt.topics import Kind, Topic

ME = "7b1c1f52-3f0e-4c2a-9d61-2a3f5e0b9c11"  # fixed: parametrize ids must be stable
OTHER = "c4e8a9d0-5b7f-4e13-8a22-6f1d0c3b7e42"
DEVICE = Principal("device", ME)
SERIAL = "SN-0042.a_b"
PROVISION = Principal("provision", SERIAL)
CONTROL = Principal("control", "ops-bot")
SERVICE = Principal("service", "fieldwatch")


def own_device_topics(device_id: str) -> list[str]:
    return [
        f"iot/devices/register/{device_id}",
        f"iot/devices/unregister/{device_id}",
        f"iot/devices/heartbeat/{device_id}",
        f"iot/devices/data/{device_id}/temperature",
        f"iot/devices/status/{device_id}",
        f"iot/devices/{device_id}/commands/c-1/ack",
        f"iot/devices/{device_id}/commands/c-1/result",
        f"iot/devices/{device_id}/config/cfg-9/applied",
    ]


# -- topics ------------------------------------------------------------------------------


def test_builders_and_parser_round_trip() -> None:
    cases = [
        (topics.register(ME), Topic(Kind.REGISTER, ME)),
        (topics.unregister(ME), Topic(Kind.UNREGISTER, ME)),
        (topics.heartbeat(ME), Topic(Kind.HEARTBEAT, ME)),
        (topics.data(ME, "temp_c"), Topic(Kind.DATA, ME, sensor_type="temp_c")),
        (topics.status(ME), Topic(Kind.STATUS, ME)),
        (topics.command_ack(ME, "c1"), Topic(Kind.COMMAND_ACK, ME, command_id="c1")),
        (topics.command_result(ME, "c1"), Topic(Kind.COMMAND_RESULT, ME, command_id="c1")),
        (topics.config_applied(ME, "k1"), Topic(Kind.CONFIG_APPLIED, ME, config_id="k1")),
        (topics.register_response(SERIAL), Topic(Kind.REGISTER_RESPONSE, SERIAL)),
        (topics.register_error(SERIAL), Topic(Kind.REGISTER_ERROR, SERIAL)),
        (topics.command(ME, "c1"), Topic(Kind.COMMAND, ME, command_id="c1")),
        (topics.config(ME, "k1"), Topic(Kind.CONFIG, ME, config_id="k1")),
        (topics.errors(ME), Topic(Kind.ERRORS, ME)),
        (topics.control_command(ME), Topic(Kind.CONTROL_COMMAND, ME)),
        (topics.control_config(ME), Topic(Kind.CONTROL_CONFIG, ME)),
    ]
    for text, parsed in cases:
        assert topics.parse(text) == parsed, text
        assert str(parsed) == text
    assert topics.data(ME, "t") == f"iot/devices/data/{ME}/t"
    assert topics.command(ME, "c1") == f"iot/devices/{ME}/commands/c1"
    assert topics.register_response(ME) == f"iot/devices/{ME}/register/response"
    assert topics.control_config(ME) == f"iot/devices/control/{ME}/config"
    assert topics.errors(ME) == f"iot/devices/{ME}/errors"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "iot",
        "iot/devices",
        "iot/devices/",
        "other/devices/register/x",
        "iot/devices/register",
        "iot/devices/register/",
        f"iot/devices/register/{ME}/extra",
        "iot/devices/register/+",
        "iot/devices/register/#",
        f"iot/devices/data/{ME}",
        f"iot/devices/data/{ME}/",
        f"iot/devices/data/{ME}/a/b",
        f"iot/devices/data/{ME}/$x",
        f"iot/devices/{ME}/commands",
        f"iot/devices/{ME}/commands/c1/nack",
        f"iot/devices/{ME}/commands/c1/ack/more",
        f"iot/devices/{ME}/config/k1/other",
        f"iot/devices/{ME}/register/other",
        f"iot/devices/{ME}/unknown/x",
        f"iot/devices/control/{ME}/reboot",
        "iot/devices/control/+/command",
        "iot/devices/data/register/response",  # reserved words are never ids
        "iot/devices/status/commands/c1",
        "iot/devices/bad id/commands/c1",
        f"iot/devices/{'x' * 101}/commands/c1",
        f"$SYS/iot/devices/register/{ME}",
    ],
)
def test_parse_rejects_foreign_and_malformed(text: str) -> None:
    assert topics.parse(text) is None


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "a+b", "x" * 101, "data", "control", "é"])
def test_builders_validate_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        topics.register(bad)
    with pytest.raises(ValueError):
        topics.command(ME, bad)


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "$sys", "nul\x00", "x" * 101])
def test_builders_validate_sensor_type(bad: str) -> None:
    with pytest.raises(ValueError):
        topics.data(ME, bad)
    assert topics.data(ME, "Température °C") == f"iot/devices/data/{ME}/Température °C"


def test_filter_helpers() -> None:
    assert topics.is_valid_filter("#")
    assert topics.is_valid_filter("a/+/c/#")
    assert not topics.is_valid_filter("a/#/c")
    assert not topics.is_valid_filter("a/b#")
    assert not topics.is_valid_filter("a/+b")
    assert not topics.is_valid_filter("")
    assert topics.matches("iot/devices/+/commands/#", f"iot/devices/{ME}/commands/c1")
    assert topics.matches("iot/#", "iot")
    assert not topics.matches("#", "$SYS/broker")
    assert not topics.matches("+/broker", "$SYS/broker")
    assert topics.matches("$SYS/#", "$SYS/broker")
    assert not topics.matches("a/+", "a/b/c")
    assert topics.is_within(f"iot/devices/{ME}/#", f"iot/devices/{ME}")
    assert not topics.is_within(f"iot/devices/{ME}", f"iot/devices/{ME}")
    assert not topics.is_within("iot/devices/+/#", f"iot/devices/{ME}")
    assert topics.device_filter(ME) == f"iot/devices/{ME}/#"
    assert topics.provisioning_filter(SERIAL) == f"iot/devices/{SERIAL}/register/+"
    assert topics.shared("iot/devices/data/+/+", "gw") == "$share/gw/iot/devices/data/+/+"
    for text in own_device_topics(ME):
        assert any(topics.matches(f, text) for f in topics.SERVER_FILTERS), text
    assert any(topics.matches(f, topics.control_command(ME)) for f in topics.SERVER_FILTERS)
    assert not any(topics.matches(f, topics.command(ME, "c1")) for f in topics.SERVER_FILTERS)


# -- publish -----------------------------------------------------------------------------


@pytest.mark.parametrize("topic", own_device_topics(ME))
def test_device_publishes_its_own_topics(topic: str) -> None:
    assert may_publish(DEVICE, topic)
    assert is_allowed(DEVICE, "publish", topic)


@pytest.mark.parametrize("topic", own_device_topics(OTHER))
def test_device_never_publishes_for_another_device(topic: str) -> None:
    assert not may_publish(DEVICE, topic)


@pytest.mark.parametrize(
    "topic",
    [
        f"iot/devices/{ME}/commands/c1",  # server -> device
        f"iot/devices/{ME}/config/k1",
        f"iot/devices/{ME}/register/response",
        f"iot/devices/{ME}/register/error",
        f"iot/devices/{ME}/errors",
        f"iot/devices/control/{ME}/command",  # control
        f"iot/devices/control/{ME}/config",
        f"iot/devices/data/{ME}/+",  # wildcards are never topic names
        f"iot/devices/data/{ME}/#",
        "iot/devices/register/+",
        "#",
        f"$SYS/{ME}",
        f"iot/devices/{ME}",
        "elsewhere/entirely",
    ],
)
def test_device_publish_refusals(topic: str) -> None:
    assert not may_publish(DEVICE, topic)


def test_provision_publishes_only_its_own_register_topic() -> None:
    assert may_publish(PROVISION, f"iot/devices/register/{SERIAL}")
    assert not may_publish(PROVISION, "iot/devices/register/SN-0043")
    assert not may_publish(PROVISION, f"iot/devices/register/{ME}")
    assert not may_publish(PROVISION, f"iot/devices/unregister/{SERIAL}")
    assert not may_publish(PROVISION, f"iot/devices/heartbeat/{SERIAL}")
    assert not may_publish(PROVISION, f"iot/devices/data/{SERIAL}/t")
    assert not may_publish(PROVISION, f"iot/devices/{SERIAL}/register/response")
    assert not may_publish(PROVISION, "iot/devices/register/+")
    # a provisioning client named with a wildcard gets nothing
    assert not may_publish(Principal("provision", "+"), "iot/devices/register/+")


def test_control_publishes_control_topics_only() -> None:
    assert may_publish(CONTROL, f"iot/devices/control/{ME}/command")
    assert may_publish(CONTROL, f"iot/devices/control/{OTHER}/config")
    assert not may_publish(CONTROL, "iot/devices/control/+/command")
    assert not may_publish(CONTROL, f"iot/devices/{ME}/commands/c1")
    assert not may_publish(CONTROL, f"iot/devices/data/{ME}/t")
    assert not may_publish(CONTROL, f"iot/devices/register/{ME}")


def test_service_publishes_anything_but_wildcards() -> None:
    assert may_publish(SERVICE, f"iot/devices/{ME}/commands/c1")
    assert may_publish(SERVICE, f"iot/devices/data/{ME}/t")
    assert may_publish(SERVICE, "anything/else")
    assert not may_publish(SERVICE, "a/+")
    assert not may_publish(SERVICE, "#")
    assert not may_publish(SERVICE, "")


# -- subscribe ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter",
    [
        f"iot/devices/{ME}/#",
        f"iot/devices/{ME}/+",
        f"iot/devices/{ME}/commands/+",
        f"iot/devices/{ME}/commands/#",
        f"iot/devices/{ME}/config/+",
        f"iot/devices/{ME}/register/response",
        f"iot/devices/{ME}/register/+",
        f"iot/devices/{ME}/+/+",
        f"iot/devices/{ME}/errors",
    ],
)
def test_device_subscribes_inside_its_own_tree(topic_filter: str) -> None:
    assert may_subscribe(DEVICE, topic_filter)
    assert is_allowed(DEVICE, "subscribe", topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+",
        "+/#",
        "+/devices/#",
        "iot/#",
        "iot/+/#",
        "iot/devices/#",
        "iot/devices/+",
        "iot/devices/+/#",
        "iot/devices/+/commands/+",
        "iot/devices/+/commands/#",
        f"iot/devices/{OTHER}/#",
        f"iot/devices/{OTHER}/commands/+",
        f"iot/devices/{OTHER}/register/response",
        f"iot/devices/{ME}",  # the parent level is not inside the tree
        f"iot/devices/{ME}/#/x",  # malformed
        f"iot/devices/{ME}/com+",
        f"iot/devices/data/{ME}/+",  # its own uplink topics are the server's
        f"iot/devices/status/{ME}",
        f"$share/g/iot/devices/{ME}/#",
        "$share/g/#",
        "$SYS/#",
        "$SYS/broker/clients/connected",
        f"iot/devices/control/{ME}/command",
        "",
    ],
)
def test_device_subscribe_refusals(topic_filter: str) -> None:
    assert not may_subscribe(DEVICE, topic_filter)


def test_device_named_with_wildcards_gets_nothing() -> None:
    for name in ("+", "#", "a/b", "", "data"):
        rogue = Principal("device", name)
        assert not may_subscribe(rogue, f"iot/devices/{name}/#")
        assert not may_subscribe(rogue, "iot/devices/+/commands/#")
        assert not may_publish(rogue, f"iot/devices/data/{name}/t")


def test_provision_subscriptions() -> None:
    assert may_subscribe(PROVISION, f"iot/devices/{SERIAL}/register/response")
    assert may_subscribe(PROVISION, f"iot/devices/{SERIAL}/register/error")
    assert may_subscribe(PROVISION, f"iot/devices/{SERIAL}/register/+")
    assert may_subscribe(PROVISION, f"iot/devices/{SERIAL}/register/#")
    refused = [
        "iot/devices/SN-0043/register/response",  # mismatched serial
        "iot/devices/SN-0043/register/#",
        "iot/devices/+/register/response",
        "iot/devices/+/register/#",
        f"iot/devices/{SERIAL}/#",
        f"iot/devices/{SERIAL}/commands/+",
        f"iot/devices/{SERIAL}/register",
        "#",
        f"$share/g/iot/devices/{SERIAL}/register/+",
        "$SYS/#",
    ]
    for topic_filter in refused:
        assert not may_subscribe(PROVISION, topic_filter), topic_filter


def test_control_subscribes_to_nothing() -> None:
    for topic_filter in ("#", "iot/devices/control/+/command", f"iot/devices/{ME}/#"):
        assert not may_subscribe(CONTROL, topic_filter)


def test_service_subscribes_to_any_valid_filter() -> None:
    for topic_filter in ("#", "iot/devices/+/commands/#", "$share/gw/iot/devices/data/+/+"):
        assert may_subscribe(SERVICE, topic_filter)
    assert not may_subscribe(SERVICE, "a/#/b")
    assert not is_allowed(SERVICE, "delete", "#")  # type: ignore[arg-type]


def test_principal_kind_is_checked() -> None:
    with pytest.raises(ValueError):
        Principal("admin", "x")  # type: ignore[arg-type]
    assert Principal("device", ME) == DEVICE
    assert hash(Principal("device", ME)) == hash(DEVICE)


# -- dynamic-security ACLs ---------------------------------------------------------------


def _allowed_by_acls(acls: list[dict[str, object]], acltype: str, topic: str) -> bool:
    """A small model of Mosquitto 2.0 dynamic security: literal subscribe ACLs first,
    then by priority; a subscription's wildcards are matched as plain text."""
    kinds = {acltype} if acltype != "subscribe" else {"subscribeLiteral", "subscribePattern"}
    entries = [a for a in acls if a["acltype"] in kinds]
    entries.sort(key=lambda a: (a["acltype"] != "subscribeLiteral", -int(str(a["priority"]))))
    for acl in entries:
        pattern = str(acl["topic"])
        hit = pattern == topic if acl["acltype"] == "subscribeLiteral" else _plain(pattern, topic)
        if hit:
            return bool(acl["allow"])
    return False


def _plain(pattern: str, topic: str) -> bool:
    if topic.startswith("$") and not pattern.startswith("$"):
        return False
    return topics.matches(pattern, topic)


def test_dynsec_device_role_matches_the_rules() -> None:
    acls = dynsec_role_acls("device", ME)
    for topic in own_device_topics(ME):
        assert _allowed_by_acls(acls, "publishClientSend", topic)
    for topic in [*own_device_topics(OTHER), topics.command(ME, "c"), topics.control_command(ME)]:
        assert not _allowed_by_acls(acls, "publishClientSend", topic)
    for topic_filter in (f"iot/devices/{ME}/#", f"iot/devices/{ME}/commands/+"):
        assert _allowed_by_acls(acls, "subscribe", topic_filter)
    for topic_filter in ("#", "iot/devices/+/commands/#", f"iot/devices/{OTHER}/#", "$SYS/#"):
        assert not _allowed_by_acls(acls, "subscribe", topic_filter)
    assert _allowed_by_acls(acls, "publishClientReceive", topics.command(ME, "c"))
    assert not _allowed_by_acls(acls, "publishClientReceive", topics.command(OTHER, "c"))
    with pytest.raises(ValueError):
        dynsec_role_acls("device")
    with pytest.raises(ValueError):
        dynsec_role_acls("device", "+")


def test_dynsec_provision_role_refuses_wildcard_sniffing() -> None:
    acls = dynsec_role_acls("provision")
    assert _allowed_by_acls(acls, "publishClientSend", f"iot/devices/register/{SERIAL}")
    assert not _allowed_by_acls(acls, "publishClientSend", f"iot/devices/data/{SERIAL}/t")
    assert _allowed_by_acls(acls, "subscribe", f"iot/devices/{SERIAL}/register/response")
    assert _allowed_by_acls(acls, "subscribe", f"iot/devices/{SERIAL}/register/#")
    for sniff in ("+", "#", "response", "error"):
        assert not _allowed_by_acls(acls, "subscribe", f"iot/devices/+/register/{sniff}")
    assert not _allowed_by_acls(acls, "subscribe", "#")
    assert not _allowed_by_acls(acls, "subscribe", "iot/devices/#")


def test_dynsec_control_and_service_roles() -> None:
    control = dynsec_role_acls("control")
    assert _allowed_by_acls(control, "publishClientSend", topics.control_command(ME))
    assert not _allowed_by_acls(control, "publishClientSend", topics.command(ME, "c"))
    assert not _allowed_by_acls(control, "subscribe", "#")
    service = dynsec_role_acls("service")
    assert _allowed_by_acls(service, "publishClientSend", topics.command(ME, "c"))
    assert _allowed_by_acls(service, "subscribe", "$share/gw/iot/devices/data/+/+")
    assert not _allowed_by_acls(service, "publishClientSend", "$CONTROL/dynamic-security/v1")
    with pytest.raises(ValueError):
        dynsec_role_acls("nobody")  # type: ignore[arg-type]
