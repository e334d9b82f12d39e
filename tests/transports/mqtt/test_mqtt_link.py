"""MqttLink against a real Mosquitto started by each test (tests/mqtt_helpers.py), plus a
tiny scripted broker where the test needs to control when PUBACKs come. Each test runs
on both clients of the link (``mqtt_client``, tests/mqtt_link_helpers.py).

Without the ``mosquitto`` binary the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from fieldwatch.transports.mqtt.link import (
    IncomingMessage,
    MqttConnectError,
    MqttPublishError,
)
from mqtt_helpers import Mosquitto, free_port, mosquitto_binary
from mqtt_link_helpers import (
    Collector,
    ScriptedBroker,
    broker,
    eventually,
    mqtt_client,
    new_link,
    require,
    subscriber,
)

__all__ = ["broker", "mqtt_client"]  # the fixtures used here

pytestmark = pytest.mark.usefixtures("mqtt_client")


async def test_round_trip_in_order_and_batched(broker: Mosquitto) -> None:
    collector = Collector()
    sub = await subscriber(broker.port, "fw/rt/#", collector)
    pub = new_link(broker.port)
    await pub.start()
    try:
        assert sub.connected and pub.connected
        assert sub.subscriptions == {"fw/rt/#": 1}
        await asyncio.gather(
            *(pub.publish(f"fw/rt/{i % 7}", str(i).encode(), qos=1) for i in range(2000))
        )
        await eventually(lambda: len(collector.messages) >= 2000, "2,000 messages")
        got = collector.messages
        assert [int(m.payload) for m in got] == list(range(2000))
        assert [m.topic for m in got[:8]] == [f"fw/rt/{i % 7}" for i in range(8)]
        assert all(m.qos == 1 and not m.retain for m in got)
        assert max(len(b) for b in collector.batches) > 1
        assert len(collector.batches) < 2000
        assert collector.acked == 2000
    finally:
        await pub.stop()
        await sub.stop()
    assert not sub.connected


async def test_publish_returns_when_the_broker_has_it(broker: Mosquitto) -> None:
    pub = new_link(broker.port)
    await pub.start()
    try:
        await pub.publish("fw/retained/config", b'{"v": 1}', qos=1, retain=True)
        await pub.publish("fw/retained/qos0", b"zero", qos=0, retain=True)
    finally:
        await pub.stop()
    with pytest.raises(MqttPublishError, match="not connected"):
        await pub.publish("fw/retained/config", b"late")
    collector = Collector()
    sub = await subscriber(broker.port, "fw/retained/#", collector)
    try:
        await eventually(lambda: len(collector.messages) >= 2, "the retained messages")
        by_topic = {m.topic: m for m in collector.messages}
        assert by_topic["fw/retained/config"].payload == b'{"v": 1}'
        assert by_topic["fw/retained/config"].retain
        assert by_topic["fw/retained/qos0"].payload == b"zero"
    finally:
        await sub.stop()


async def test_publish_waits_for_the_puback() -> None:
    async with ScriptedBroker({"slow": 0.4}) as fake:
        link = new_link(fake.port)
        await link.start()
        try:
            t0 = time.perf_counter()
            await link.publish("slow", b"x", qos=1)
            waited = time.perf_counter() - t0
            assert 0.35 <= waited < 3.0
            t0 = time.perf_counter()
            with pytest.raises(MqttPublishError, match="did not acknowledge 'never'"):
                await link.publish("never", b"x", qos=1, ack_timeout=0.3)
            assert time.perf_counter() - t0 >= 0.29
            await link.publish("never", b"x", qos=0)  # QoS 0: once written
        finally:
            await link.stop()


async def test_resubscribes_after_the_broker_restarts(broker: Mosquitto) -> None:
    sessions: list[bool] = []

    async def hook(session_present: bool) -> None:
        sessions.append(session_present)

    collector = Collector()
    link = new_link(broker.port, handler=collector)
    collector.link = link
    link.on_connect.append(hook)
    await link.start()
    await link.subscribe("fw/restart/#", 1)
    port = broker.port
    restarted: Mosquitto | None = None
    try:
        broker.stop()
        await eventually(lambda: not link.connected, "the link to notice the broker is gone")
        with pytest.raises(MqttPublishError):
            await link.publish("fw/restart/x", b"nobody listens")
        restarted = Mosquitto(port=port).start()
        await eventually(lambda: link.connected, "the link to reconnect")
        await eventually(lambda: len(sessions) == 2, "the on_connect hook to run again")
        assert sessions == [False, False]  # persistence is off: a new session each time
        pub = new_link(port)
        await pub.start()
        try:
            # retained, so it arrives whether it beats the re-subscription or not; it can
            # only arrive through a subscription the link made on the new broker itself
            await pub.publish("fw/restart/a", b"after restart", qos=1, retain=True)
        finally:
            await pub.stop()
        await eventually(lambda: len(collector.messages) == 1, "the message after restart")
        assert collector.messages[0].topic == "fw/restart/a"
        assert collector.messages[0].payload == b"after restart"
    finally:
        await link.stop()
        if restarted is not None:
            restarted.stop()


async def test_acks_from_an_earlier_connection_are_skipped(broker: Mosquitto) -> None:
    """Packet ids start again on a new connection: acking an old message there could
    acknowledge a different one, so the link refuses."""
    gate = asyncio.Event()
    results: list[int] = []

    async def handler(batch: list[IncomingMessage]) -> None:
        await gate.wait()
        results.append(link.ack(batch))

    link = new_link(broker.port, handler=handler)
    await link.start()
    await link.subscribe("fw/old/#", 1)
    port = broker.port
    pub = new_link(port)
    await pub.start()
    await pub.publish("fw/old/a", b"held", qos=1)
    await pub.stop()
    await eventually(lambda: link.pending == 0, "the handler to take the message")
    restarted: Mosquitto | None = None
    try:
        broker.stop()
        await eventually(lambda: not link.connected, "the disconnect")
        restarted = Mosquitto(port=port).start()
        await eventually(lambda: link.connected, "the reconnect")
        gate.set()
        await eventually(lambda: len(results) == 1, "the handler to finish")
        assert results == [0]
    finally:
        gate.set()
        await link.stop()
        if restarted is not None:
            restarted.stop()


async def test_unacked_messages_come_again_on_a_persistent_session(broker: Mosquitto) -> None:
    client_id = f"fw-persist-{uuid.uuid4().hex[:8]}"
    first = Collector(ack=lambda m: m.payload.startswith(b"ack"))
    link = await subscriber(
        broker.port, "fw/ack/#", first, client_id=client_id, clean_session=False
    )
    payloads = [b"ack-0", b"keep-0", b"ack-1", b"keep-1", b"ack-2", b"keep-2"]
    pub = new_link(broker.port)
    await pub.start()
    try:
        for payload in payloads:
            await pub.publish("fw/ack/d1", payload, qos=1)
        await eventually(lambda: len(first.messages) == 6, "six messages")
        assert first.acked == 3
    finally:
        await link.stop()

    sessions: list[bool] = []

    async def hook(session_present: bool) -> None:
        sessions.append(session_present)

    again = Collector()
    link = new_link(broker.port, client_id=client_id, clean_session=False, handler=again)
    again.link = link
    link.on_connect.append(hook)
    try:
        await link.start()
        await eventually(lambda: len(again.messages) >= 3, "the redelivered messages")
        await asyncio.sleep(0.5)  # an acked message would have come by now
        assert sessions == [True]
        assert sorted(m.payload for m in again.messages) == [b"keep-0", b"keep-1", b"keep-2"]
        assert all(m.dup for m in again.messages)
        # the session still holds the subscription: new messages flow without subscribe()
        await pub.publish("fw/ack/d1", b"new", qos=1)
        await eventually(lambda: len(again.messages) == 4, "a new message")
    finally:
        await pub.stop()
        await link.stop()


async def test_a_failing_handler_leaves_messages_unacked(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    client_id = f"fw-fail-{uuid.uuid4().hex[:8]}"
    calls: list[int] = []

    async def failing(batch: list[IncomingMessage]) -> None:
        calls.append(len(batch))
        raise RuntimeError("database is down")

    link = new_link(broker.port, client_id=client_id, clean_session=False, handler=failing)
    await link.start()
    await link.subscribe("fw/fail/#", 1)
    pub = new_link(broker.port)
    await pub.start()
    try:
        with caplog.at_level(logging.ERROR, logger="fieldwatch.transports.mqtt.link"):
            await pub.publish("fw/fail/a", b"one", qos=1)
            await pub.publish("fw/fail/b", b"two", qos=1)
            await eventually(lambda: sum(calls) == 2, "two failed deliveries")
        assert "handler failed" in caplog.text
    finally:
        await link.stop()
        await pub.stop()
    again = Collector()
    link = new_link(broker.port, client_id=client_id, clean_session=False, handler=again)
    again.link = link
    try:
        await link.start()
        await eventually(lambda: len(again.messages) == 2, "both messages again")
        assert [m.payload for m in again.messages] == [b"one", b"two"]
    finally:
        await link.stop()


async def test_back_pressure_bounds_what_waits(broker: Mosquitto) -> None:
    gate = asyncio.Event()
    seen: list[list[IncomingMessage]] = []

    async def slow(batch: list[IncomingMessage]) -> None:
        seen.append(batch)
        await gate.wait()

    link = new_link(broker.port, handler=slow, batch_size=50, max_pending=100)
    await link.start()
    await link.subscribe("fw/bp/#", 0)
    pub = new_link(broker.port)
    await pub.start()
    try:
        for i in range(3000):
            await pub.publish("fw/bp/x", str(i).encode(), qos=0)
        await eventually(lambda: link.reading_paused, "reading to pause")
        await asyncio.sleep(0.3)
        assert link.pending <= 100
        assert len(seen) == 1  # the handler is stuck on the first batch
        gate.set()
        await eventually(lambda: sum(len(b) for b in seen) == 3000, "all 3,000 messages")
        assert [int(m.payload) for b in seen for m in b] == list(range(3000))
        assert max(len(b) for b in seen) <= 50
        assert not link.reading_paused
    finally:
        gate.set()
        await pub.stop()
        await link.stop()


async def test_a_clear_error_when_no_broker_listens() -> None:
    port = free_port()
    link = new_link(port, connect_timeout=1.0)
    t0 = time.perf_counter()
    with pytest.raises(MqttConnectError, match=f"127.0.0.1:{port}") as caught:
        await link.start()
    assert time.perf_counter() - t0 < 4.0
    assert "refused" in str(caught.value).lower()
    assert not link.connected


class PasswordBroker(Mosquitto):
    """Mosquitto that only admits one user from a password file."""

    username = "fw-gateway"
    password = "s3cret-" + uuid.uuid4().hex

    def _config(self) -> Path:
        path = super()._config()
        passwords = self.dir / "passwords"
        tool = shutil.which("mosquitto_passwd")
        assert tool is not None
        subprocess.run(
            [tool, "-b", "-c", str(passwords), self.username, self.password],
            check=True,
            capture_output=True,
        )
        # run as root, mosquitto drops to its own user: let it read the file
        self.dir.chmod(0o755)
        passwords.chmod(0o644)
        text = path.read_text().replace("allow_anonymous true", "allow_anonymous false")
        path.write_text(text + f"password_file {passwords}\n")
        return path


async def test_credentials(caplog: pytest.LogCaptureFixture) -> None:
    require("mosquitto", mosquitto_binary() is not None)
    require("mosquitto_passwd", shutil.which("mosquitto_passwd") is not None)
    with PasswordBroker() as secured:
        wrong = new_link(secured.port, username=secured.username, password="nope-nope")
        t0 = time.perf_counter()
        with pytest.raises(MqttConnectError, match=f"127.0.0.1:{secured.port}") as caught:
            await wrong.start()
        assert caught.value.refused
        assert time.perf_counter() - t0 < 2.0  # a refusal is final: no retrying
        with caplog.at_level(logging.DEBUG, logger="fieldwatch"):
            link = new_link(secured.port, username=secured.username, password=secured.password)
            await link.start()
            try:
                assert link.connected
                await link.publish("fw/secured", b"hello", qos=1)
            finally:
                await link.stop()
        assert secured.password not in caplog.text
        assert f"127.0.0.1:{secured.port}" in caplog.text


async def _unacked_in_flight(port: int, **options: Any) -> int:
    """How many QoS 1 messages the broker sends before any is acknowledged."""
    collector = Collector(ack=lambda _m: False)
    sub = await subscriber(port, "fw/window/#", collector, batch_size=1, **options)
    pub = new_link(port)
    await pub.start()
    try:
        await asyncio.gather(*(pub.publish("fw/window/d", b"x", qos=1) for _ in range(300)))
        await asyncio.sleep(1.0)
        return len(collector.messages) + sub.pending
    finally:
        await pub.stop()
        await sub.stop()


@pytest.mark.parametrize("mqtt_client", ["paho"], indirect=True)
async def test_mqtt311_window_is_the_brokers(broker: Mosquitto) -> None:
    """Acknowledging after commit makes the broker's in-flight window the ceiling: over
    MQTT 3.1.1 Mosquitto allows 20 messages (MQTT 5: see test_receive_maximum_*)."""
    assert await _unacked_in_flight(broker.port) == 20


async def test_mqtt5_receive_maximum_widens_the_window(broker: Mosquitto) -> None:
    assert await _unacked_in_flight(broker.port, receive_maximum=150) == 150


async def test_mqtt5_persistent_session_redelivers_unacked(broker: Mosquitto) -> None:
    client_id = f"fw-persist5-{uuid.uuid4().hex[:8]}"
    options = {"client_id": client_id, "clean_session": False, "receive_maximum": 100}
    first = Collector(ack=lambda m: m.payload == b"ack")
    link = await subscriber(broker.port, "fw/p5/#", first, **options)
    pub = new_link(broker.port)
    await pub.start()
    try:
        for payload in (b"ack", b"keep"):
            await pub.publish("fw/p5/d1", payload, qos=1)
        await eventually(lambda: len(first.messages) == 2, "two messages")
    finally:
        await link.stop()
    again = Collector()
    link = new_link(broker.port, handler=again, **options)
    again.link = link
    try:
        await link.start()
        await eventually(lambda: len(again.messages) >= 1, "the redelivered message")
        await asyncio.sleep(0.3)
        assert [m.payload for m in again.messages] == [b"keep"]
    finally:
        await pub.stop()
        await link.stop()
