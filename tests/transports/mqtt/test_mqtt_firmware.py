"""Firmware updates over MQTT: the topics of the contract, who may use them."""

from __future__ import annotations

import uuid

import pytest

from conftest import load_test_module
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import Principal, dynsec_role_acls, may_publish, may_subscribe
from fieldwatch.transports.mqtt.firmware import (
    StateReport,
    UpdateRequest,
    reported_version,
    state_report,
    update_request,
)
from fieldwatch.transports.mqtt.topics import Kind, Topic

_ACL = load_test_module("transports/mqtt/test_mqtt_acl.py")
allowed_by_acls = _ACL._allowed_by_acls

ME = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
UPDATE = str(uuid.uuid4())
DEVICE = Principal("device", ME)
CONTROL = Principal("control", "ops-bot")


# -- topics ------------------------------------------------------------------------------


def test_firmware_topics_are_those_of_the_contract() -> None:
    assert topics.firmware_update(ME, UPDATE) == f"iot/devices/{ME}/firmware/update/{UPDATE}"
    assert topics.firmware_state(ME, UPDATE) == f"iot/devices/{ME}/firmware/update/{UPDATE}/state"
    assert topics.control_firmware(ME) == f"iot/devices/firmware/{ME}/update"


def test_firmware_topics_round_trip() -> None:
    cases = [
        (topics.firmware_update(ME, UPDATE), Topic(Kind.FIRMWARE_UPDATE, ME, update_id=UPDATE)),
        (topics.firmware_state(ME, UPDATE), Topic(Kind.FIRMWARE_STATE, ME, update_id=UPDATE)),
        (topics.control_firmware(ME), Topic(Kind.CONTROL_FIRMWARE, ME)),
    ]
    for text, parsed in cases:
        assert topics.parse(text) == parsed
        assert topics.build(parsed) == text == str(parsed)
    assert Kind.FIRMWARE_STATE in topics.DEVICE_TO_SERVER
    assert Kind.FIRMWARE_UPDATE in topics.SERVER_TO_DEVICE
    assert Kind.CONTROL_FIRMWARE in topics.CONTROL


@pytest.mark.parametrize(
    "bad",
    [
        f"iot/devices/{ME}/firmware/update",  # no update id
        f"iot/devices/{ME}/firmware/update/{UPDATE}/ack",  # not "state"
        f"iot/devices/{ME}/firmware/update/{UPDATE}/state/x",  # one level too many
        f"iot/devices/{ME}/firmware/install/{UPDATE}",  # not "update"
        f"iot/devices/{ME}/firmware/update/+/state",  # a wildcard is not an id
        f"iot/devices/{ME}/firmware/update/a b/state",  # not an id
        f"iot/devices/{ME}/firmware/update/{'x' * 101}",  # too long
        f"iot/devices/firmware/{ME}/update/now",
        f"iot/devices/firmware/{ME}/upgrade",
        "iot/devices/firmware/+/update",
        "iot/devices/firmware/update",
        "iot/devices/firmware/firmware/update",  # a reserved word is never an id
    ],
)
def test_malformed_firmware_topics_are_refused(bad: str) -> None:
    assert topics.parse(bad) is None


def test_builders_refuse_bad_ids() -> None:
    for update_id in ("", "a/b", "+", "#", "x" * 101):
        with pytest.raises(ValueError):
            topics.firmware_update(ME, update_id)
        with pytest.raises(ValueError):
            topics.firmware_state(ME, update_id)
    with pytest.raises(ValueError):
        topics.control_firmware("firmware")  # would make the topic ambiguous


def test_the_server_subscribes_to_state_reports_and_control_requests() -> None:
    def heard(topic: str) -> bool:
        return any(topics.matches(f, topic) for f in topics.SERVER_FILTERS)

    assert heard(topics.firmware_state(ME, UPDATE))
    assert heard(topics.control_firmware(ME))
    assert not heard(topics.firmware_update(ME, UPDATE))  # its own sends


# -- who may do what -----------------------------------------------------------------


def test_a_device_reports_only_its_own_updates() -> None:
    assert may_publish(DEVICE, topics.firmware_state(ME, UPDATE))
    assert not may_publish(DEVICE, topics.firmware_state(OTHER, UPDATE))
    assert not may_publish(DEVICE, topics.firmware_update(ME, UPDATE))  # the server's topic
    assert not may_publish(DEVICE, topics.control_firmware(ME))
    assert may_subscribe(DEVICE, f"iot/devices/{ME}/firmware/update/+")
    assert not may_subscribe(DEVICE, f"iot/devices/{OTHER}/firmware/update/+")
    assert not may_subscribe(DEVICE, "iot/devices/+/firmware/update/+")


def test_a_control_client_asks_for_updates_and_reports_nothing() -> None:
    assert may_publish(CONTROL, topics.control_firmware(ME))
    assert may_publish(CONTROL, topics.control_firmware(OTHER))
    assert not may_publish(CONTROL, topics.firmware_state(ME, UPDATE))
    assert not may_publish(CONTROL, topics.firmware_update(ME, UPDATE))
    assert not may_subscribe(CONTROL, "iot/devices/firmware/+/update")


def test_dynsec_roles_follow_the_same_rules() -> None:
    device = dynsec_role_acls("device", ME)
    assert allowed_by_acls(device, "publishClientSend", topics.firmware_state(ME, UPDATE))
    assert not allowed_by_acls(device, "publishClientSend", topics.firmware_state(OTHER, UPDATE))
    assert not allowed_by_acls(device, "publishClientSend", topics.firmware_update(ME, UPDATE))
    assert allowed_by_acls(device, "subscribe", f"iot/devices/{ME}/firmware/update/+")
    assert allowed_by_acls(device, "publishClientReceive", topics.firmware_update(ME, UPDATE))
    assert not allowed_by_acls(device, "publishClientReceive", topics.firmware_update(OTHER, "u"))
    control = dynsec_role_acls("control")
    assert allowed_by_acls(control, "publishClientSend", topics.control_firmware(ME))
    assert not allowed_by_acls(control, "publishClientSend", topics.firmware_state(ME, UPDATE))


# -- payloads ----------------------------------------------------------------------------


def test_state_reports_are_read() -> None:
    assert state_report(UPDATE, {"state": "downloading", "bytes": 4096}) == StateReport(
        UPDATE, "downloading", bytes=4096
    )
    failed = state_report(UPDATE, {"state": "failed", "reason": "checksum_mismatch",
                                   "detail": "x" * 5000})  # fmt: skip
    assert (failed.state, failed.reason, len(failed.detail or "")) == (
        "failed",
        "checksum_mismatch",
        1000,
    )
    assert state_report(UPDATE, {"state": "rebooting"}).bytes is None


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"state": "completed"},  # the server's to decide
        {"state": "cancelled"},
        {"state": 3},
        {"state": "downloading", "bytes": -1},
        {"state": "downloading", "bytes": "12"},
        {"state": "downloading", "bytes": True},
        {"state": "failed"},  # no reason
        {"state": "failed", "reason": "Bad Reason!"},
        {"state": "verified", "reason": "checksum_mismatch"},
        {"state": "verified", "detail": 7},
    ],
)
def test_malformed_state_reports_are_refused(payload: dict) -> None:
    with pytest.raises(ValueError):
        state_report(UPDATE, payload)


def test_control_requests_are_read() -> None:
    sha = "AB" * 32
    assert update_request({"version": "1.5.0"}) == UpdateRequest("1.5.0")
    with_url = {"version": " 1.5.0 ", "checksum": f"sha256:{sha}", "url": "http://elsewhere/x"}
    assert update_request(with_url) == UpdateRequest("1.5.0", sha.lower())
    assert update_request({"version": "2", "checksum": sha}).checksum == sha.lower()


@pytest.mark.parametrize(
    "payload",
    [{}, {"version": ""}, {"version": 15}, {"version": "x" * 51},
     {"version": "1", "checksum": "abc"}, {"version": "1", "checksum": "md5:" + "a" * 32},
     {"version": "1", "checksum": 5}],
)  # fmt: skip
def test_malformed_control_requests_are_refused(payload: dict) -> None:
    with pytest.raises(ValueError):
        update_request(payload)


def test_the_running_version_is_read_from_status_payloads() -> None:
    assert reported_version({"status": "online", "firmware_version": "1.5.0"}) == "1.5.0"
    assert reported_version({"firmware": "1.4.2", "uptime": 3}) == "1.4.2"
    assert reported_version({"battery_level": 80}) is None
    assert reported_version({"firmware_version": 15}) is None
