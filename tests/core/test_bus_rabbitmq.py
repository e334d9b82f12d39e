"""The RabbitMQ event bus against a real broker.

Uses FIELDWATCH_TEST_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/). When the
broker is unreachable the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, DeliveryMode

from fieldwatch.app import create_app
from fieldwatch.core.bus_rabbitmq import (
    EventBusUnavailable,
    EventPublishError,
    RabbitMQEventBus,
    binding_key,
    mask_url,
)
from fieldwatch.core.events import Event, InProcessEventBus
from fieldwatch.core.settings import Settings
from fieldwatch.db import migrate
from fieldwatch.runtime import build_runtime
from rabbit_helpers import exchange, rabbit_url

TIMEOUT = 10.0

__all__ = ["exchange", "rabbit_url"]  # the fixtures used here


@pytest.fixture
async def make_bus(rabbit_url: str, exchange: str) -> AsyncIterator[Callable[[], RabbitMQEventBus]]:
    """Bus factory; each bus stands for one process. All are closed after the test."""
    buses: list[RabbitMQEventBus] = []

    def make() -> RabbitMQEventBus:
        bus = RabbitMQEventBus(rabbit_url, exchange, publish_timeout_s=TIMEOUT)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


def collector() -> tuple[asyncio.Queue[Event], Callable[[Event], Awaitable[None]]]:
    received: asyncio.Queue[Event] = asyncio.Queue()

    async def handler(event: Event) -> None:
        received.put_nowait(event)

    return received, handler


async def next_event(received: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(received.get(), TIMEOUT)


def make_event(
    type_: str, *, workspace: uuid.UUID | None = None, subject: uuid.UUID | None = None
) -> Event:
    return Event(
        type=type_,
        workspace_id=workspace or uuid.uuid4(),
        subject_id=subject,
        payload={"name": "pump-7", "n": 3, "nested": {"ok": True, "tags": ["a", "b"]}},
    )


async def get_message(queue: AbstractQueue) -> AbstractIncomingMessage:
    """A confirmed publish is already queued; poll briefly all the same."""
    for _ in range(50):
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            return message
        await asyncio.sleep(0.1)
    raise AssertionError("no message arrived on the raw queue")


# -- pure functions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        ("device.created", "*.*.device.created"),
        ("device.*", "*.*.device.#"),
        ("device.status_*", "*.*.device.#"),
        ("*", "#"),
        ("*.raised", "#"),
    ],
)
def test_binding_key_translation(pattern: str, key: str) -> None:
    assert binding_key(pattern) == key


def test_mask_url_hides_password() -> None:
    assert mask_url("amqp://fw:s3cr3t@mq.example:5672/prod") == "amqp://fw:***@mq.example:5672/prod"
    assert mask_url("amqp://mq.example/") == "amqp://mq.example/"


# -- against the broker --------------------------------------------------------------------


async def test_event_reaches_subscriber_in_another_process(
    make_bus: Callable[[], RabbitMQEventBus],
) -> None:
    publisher, consumer = make_bus(), make_bus()
    received, handler = collector()
    consumer.subscribe("device.created", handler)  # before start: applied on start
    await consumer.start()
    await publisher.start()

    sent = make_event("device.created", subject=uuid.uuid4())
    await publisher.publish(sent)
    got = await next_event(received)

    assert got == sent  # id, type, workspace, subject, occurred_at and payload all equal
    assert got.id == sent.id and isinstance(got.id, uuid.UUID)
    assert got.workspace_id == sent.workspace_id
    assert got.payload == {"name": "pump-7", "n": 3, "nested": {"ok": True, "tags": ["a", "b"]}}
    assert got.occurred_at.tzinfo is not None

    no_subject = make_event("device.created")
    await publisher.publish(no_subject)
    got = await next_event(received)
    assert got == no_subject and got.subject_id is None


async def test_pattern_routing(make_bus: Callable[[], RabbitMQEventBus]) -> None:
    publisher, consumer = make_bus(), make_bus()
    devices, device_handler = collector()
    everything, all_handler = collector()
    consumer.subscribe("device.*", device_handler)
    consumer.subscribe("*", all_handler)
    await consumer.start()
    await publisher.start()

    types = ["alert.raised", "device.created", "devices.created", "device.status_changed"]
    for type_ in types:
        await publisher.publish(make_event(type_))
    assert [(await next_event(everything)).type for _ in types] == types
    await asyncio.sleep(0.2)  # the device handler ran for the same messages

    got = []
    while not devices.empty():
        got.append(devices.get_nowait().type)
    assert got == ["device.created", "device.status_changed"]


async def test_pattern_only_consumer_ignores_other_types(
    make_bus: Callable[[], RabbitMQEventBus],
) -> None:
    publisher, consumer = make_bus(), make_bus()
    devices, handler = collector()
    consumer.subscribe("device.*", handler)
    await consumer.start()
    await publisher.start()

    await publisher.publish(make_event("alert.raised"))
    marker = make_event("device.created")
    await publisher.publish(marker)
    assert (await next_event(devices)).id == marker.id  # alert.raised was not delivered first
    await asyncio.sleep(0.2)
    assert devices.empty()


async def test_subscribe_after_start_and_unsubscribe(
    make_bus: Callable[[], RabbitMQEventBus],
) -> None:
    publisher, consumer = make_bus(), make_bus()
    await publisher.start()
    await consumer.start()
    alerts, alert_handler = collector()
    sentinel, sentinel_handler = collector()
    unsubscribe = consumer.subscribe("alert.*", alert_handler)
    consumer.subscribe("device.*", sentinel_handler)
    await consumer.wait_ready()

    first = make_event("alert.raised")
    await publisher.publish(first)
    assert (await next_event(alerts)).id == first.id

    unsubscribe()
    await consumer.wait_ready()
    await publisher.publish(make_event("alert.raised"))
    marker = make_event("device.created")
    await publisher.publish(marker)
    assert (await next_event(sentinel)).id == marker.id
    await asyncio.sleep(0.2)
    assert alerts.empty()


async def test_fan_out_to_every_process(make_bus: Callable[[], RabbitMQEventBus]) -> None:
    publisher, first, second = make_bus(), make_bus(), make_bus()
    got_first, handler_first = collector()
    got_second, handler_second = collector()
    first.subscribe("device.*", handler_first)
    second.subscribe("device.*", handler_second)
    for bus in (first, second, publisher):
        await bus.start()

    sent = make_event("device.status_changed", subject=uuid.uuid4())
    await publisher.publish(sent)
    assert await next_event(got_first) == sent
    assert await next_event(got_second) == sent


async def test_a_group_handles_each_event_once_and_keeps_what_came_while_it_was_away(
    make_bus: Callable[[], RabbitMQEventBus],
) -> None:
    publisher, first, second = make_bus(), make_bus(), make_bus()
    await publisher.start()
    got_first, handler_first = collector()
    first.subscribe("device.*", handler_first, group="testers")
    await first.start()
    early = [make_event("device.status_changed", subject=uuid.uuid4()) for _ in range(3)]
    await first.close()  # the group's only process goes away; its queue stays
    for event in early:
        await publisher.publish(event)
    got_second, handler_second = collector()
    second.subscribe("device.*", handler_second, group="testers")
    await second.start()  # a new process of the group gets what came meanwhile
    assert [await next_event(got_second) for _ in early] == early
    third = make_bus()
    third.subscribe("device.*", handler_second, group="testers")  # both into one queue
    await third.start()
    later = [make_event("device.created", subject=uuid.uuid4()) for _ in range(20)]
    for event in later:
        await publisher.publish(event)
    seen = [await next_event(got_second) for _ in later]
    await asyncio.sleep(0.5)  # a second copy of any would have come by now
    assert got_second.empty()
    assert sorted(e.id for e in seen) == sorted(e.id for e in later)  # each once
    assert got_first.empty()


async def test_failing_handler_does_not_stop_delivery(
    make_bus: Callable[[], RabbitMQEventBus], caplog: pytest.LogCaptureFixture
) -> None:
    publisher, consumer = make_bus(), make_bus()
    received, collect = collector()
    calls: list[uuid.UUID] = []

    async def flaky(event: Event) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("handler blew up")
        await collect(event)

    consumer.subscribe("device.*", flaky)
    await consumer.start()
    await publisher.start()

    events = [make_event("device.created") for _ in range(3)]
    with caplog.at_level(logging.ERROR, logger="fieldwatch.core.bus_rabbitmq"):
        for event in events:
            await publisher.publish(event)
        assert (await next_event(received)).id == events[1].id
        assert (await next_event(received)).id == events[2].id

    assert calls == [e.id for e in events]
    failures = [r for r in caplog.records if r.getMessage() == "event handler failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and "blew up" in str(failures[0].exc_info[1])


async def test_routing_key_and_message_properties(
    rabbit_url: str, exchange: str, make_bus: Callable[[], RabbitMQEventBus]
) -> None:
    publisher = make_bus()
    await publisher.start()  # declares the exchange
    workspace, subject = uuid.uuid4(), uuid.uuid4()

    connection = await aio_pika.connect(rabbit_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=f"{workspace}.#")

        with_subject = make_event("device.status_changed", workspace=workspace, subject=subject)
        await publisher.publish(with_subject)
        message = await get_message(queue)
        assert message.routing_key == f"{workspace}.{subject}.device.status_changed"
        assert message.message_id == str(with_subject.id)
        assert message.content_type == "application/json"
        assert message.delivery_mode == DeliveryMode.PERSISTENT
        assert message.type == "device.status_changed"
        assert isinstance(message.timestamp, datetime)
        expected_ts = with_subject.occurred_at.astimezone(UTC).replace(microsecond=0)
        assert message.timestamp.astimezone(UTC) == expected_ts
        assert json.loads(message.body) == with_subject.to_dict()

        await publisher.publish(make_event("alert.raised"))  # another workspace: not bound
        without_subject = make_event("alert.raised", workspace=workspace)
        await publisher.publish(without_subject)
        message = await get_message(queue)
        assert message.routing_key == f"{workspace}.-.alert.raised"
        assert message.message_id == str(without_subject.id)
        assert await queue.get(fail=False) is None
    finally:
        await connection.close()


async def test_broker_nack_raises(
    rabbit_url: str, exchange: str, make_bus: Callable[[], RabbitMQEventBus]
) -> None:
    publisher = make_bus()
    await publisher.start()
    connection = await aio_pika.connect(rabbit_url)
    try:
        channel = await connection.channel()
        full = await channel.declare_queue(
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )
        await full.bind(exchange, routing_key="#")
        with pytest.raises(EventPublishError, match="refused"):
            await publisher.publish(make_event("device.created"))
    finally:
        await connection.close()


async def test_publish_before_start_raises(make_bus: Callable[[], RabbitMQEventBus]) -> None:
    with pytest.raises(EventBusUnavailable, match="not started"):
        await make_bus().publish(make_event("device.created"))


async def test_unreachable_broker_raises_without_leaking_password() -> None:
    bus = RabbitMQEventBus("amqp://fw:hunter2-secret@127.0.0.1:1/", connect_timeout_s=5)
    with pytest.raises(EventBusUnavailable) as info:
        await bus.start()
    assert "hunter2-secret" not in str(info.value)
    assert "amqp://fw:***@127.0.0.1:1/" in str(info.value)
    assert not bus.started


async def test_runtime_and_app_use_rabbitmq_when_configured(
    rabbit_url: str, exchange: str, make_bus: Callable[[], RabbitMQEventBus], tmp_path: Path
) -> None:
    settings = Settings(
        env="test", data_dir=tmp_path, jwt_secret="x" * 40,
        rabbitmq_url=rabbit_url, rabbitmq_exchange=exchange,
    )  # fmt: skip
    runtime = build_runtime(settings)
    await migrate.upgrade(runtime.engine)  # the runtime starts services that use the schema
    assert isinstance(runtime.bus, RabbitMQEventBus)
    assert runtime.bus.exchange_name == exchange
    assert not runtime.bus.started

    consumer = make_bus()
    received, handler = collector()
    consumer.subscribe("device.*", handler)
    await consumer.start()

    await runtime.start()
    try:
        sent = make_event("device.created")
        await runtime.bus.publish(sent)
        assert await next_event(received) == sent
    finally:
        await runtime.close()
    assert not runtime.bus.started

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        bus = app.state.runtime.bus
        assert isinstance(bus, RabbitMQEventBus) and bus.started
        sent = make_event("device.deleted")
        await bus.publish(sent)
        assert await next_event(received) == sent
    assert not bus.started


def test_runtime_defaults_to_in_process_bus(tmp_path: Path) -> None:
    runtime = build_runtime(Settings(env="test", data_dir=tmp_path, jwt_secret="x" * 40))
    assert isinstance(runtime.bus, InProcessEventBus)
