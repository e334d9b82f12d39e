"""A real RabbitMQ for the tests: ``rabbit_url`` (the broker, checked once; unreachable
skips, or fails in CI) and ``exchange`` (a fresh exchange per test, deleted after).

Uses FIELDWATCH_TEST_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from fieldwatch.core.bus_groups import queue_name
from fieldwatch.core.bus_rabbitmq import mask_url
from fieldwatch.core.events import WORKERS

RABBIT_URL = os.environ.get("FIELDWATCH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
RUN_ID = uuid.uuid4().hex[:10]
GROUPS = (WORKERS, "testers")


@pytest.fixture(scope="session")
async def rabbit_url() -> str:
    try:
        connection = await aio_pika.connect(RABBIT_URL, timeout=5)
    except Exception as exc:
        message = f"RabbitMQ at {mask_url(RABBIT_URL)} is unreachable: {exc!r}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    await connection.close()
    return RABBIT_URL


@pytest.fixture
async def exchange(rabbit_url: str) -> AsyncIterator[str]:
    """A fresh exchange name for each test of each run; deleted afterwards."""
    name = f"fieldwatch.test.{RUN_ID}.{uuid.uuid4().hex[:8]}"
    yield name
    connection = await aio_pika.connect(rabbit_url)
    try:
        channel = await connection.channel()
        for group in GROUPS:  # the durable queues of subscription groups outlive processes
            await channel.queue_delete(queue_name(name, group))
        await channel.exchange_delete(name)
    finally:
        await connection.close()
