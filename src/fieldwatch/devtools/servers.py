"""The shared servers a local topology runs over (``devtools.topology``): PostgreSQL,
Redis and RabbitMQ already running on this machine, plus the nginx and Mosquitto
programs it starts itself. Each run gets a database, a Redis key prefix and a RabbitMQ
exchange of its own, removed afterwards, so runs never see each other's data.

Addresses (environment, or the ``make topology`` options):

    FIELDWATCH_TOPOLOGY_DATABASE_URL  an admin connection (CREATE/DROP DATABASE);
                                      default postgresql://postgres@127.0.0.1:5432/postgres
    FIELDWATCH_TOPOLOGY_REDIS_URL     default redis://127.0.0.1:6379/0
    FIELDWATCH_TOPOLOGY_RABBITMQ_URL  default amqp://guest:guest@127.0.0.1:5672/
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass

from fieldwatch.core.bus_groups import queue_name
from fieldwatch.core.bus_rabbitmq import mask_url
from fieldwatch.core.events import WORKERS
from fieldwatch.db.engine import normalize_url
from fieldwatch.devtools.mosquitto import dynsec_plugin, mosquitto_binary
from fieldwatch.devtools.nginx import nginx_binary

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Servers:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    rabbitmq_url: str = DEFAULT_RABBITMQ_URL

    @classmethod
    def from_env(cls) -> Servers:
        env = os.environ.get
        return cls(
            database_url=env("FIELDWATCH_TOPOLOGY_DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url=env("FIELDWATCH_TOPOLOGY_REDIS_URL", DEFAULT_REDIS_URL),
            rabbitmq_url=env("FIELDWATCH_TOPOLOGY_RABBITMQ_URL", DEFAULT_RABBITMQ_URL),
        )

    def database(self, name: str) -> str:
        """The URL of database ``name`` on the same server, as Fieldwatch takes it."""
        return normalize_url(self.database_url).set(database=name).render_as_string(False)

    def _admin_dsn(self) -> str:
        url = normalize_url(self.database_url).set(drivername="postgresql")
        return url.render_as_string(False)

    async def create_database(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn(), timeout=CHECK_TIMEOUT_S)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop_database(self, name: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn(), timeout=CHECK_TIMEOUT_S)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def forget(self, redis_prefix: str, exchange: str) -> None:
        """Delete the run's Redis keys and its RabbitMQ exchange."""
        import aio_pika
        from redis.asyncio import Redis

        redis = Redis.from_url(self.redis_url, socket_connect_timeout=CHECK_TIMEOUT_S)
        try:
            keys = [k async for k in redis.scan_iter(match=f"{redis_prefix}:*", count=1000)]
            if keys:
                await redis.delete(*keys)
        finally:
            await redis.aclose()
        connection = await aio_pika.connect(self.rabbitmq_url, timeout=CHECK_TIMEOUT_S)
        try:
            channel = await connection.channel()
            await channel.queue_delete(queue_name(exchange, WORKERS))  # outlives processes
            await channel.exchange_delete(exchange)
        finally:
            await connection.close()

    async def unavailable(self) -> list[str]:
        """What is missing to run a topology here, each with why (empty: all there)."""
        problems = [p for p in _programs() if p]
        checks = {
            f"PostgreSQL at {mask_url(self.database_url)}": self._check_postgres(),
            f"Redis at {mask_url(self.redis_url)}": self._check_redis(),
            f"RabbitMQ at {mask_url(self.rabbitmq_url)}": self._check_rabbitmq(),
        }
        results = await asyncio.gather(*checks.values(), return_exceptions=True)
        for what, result in zip(checks, results, strict=True):
            if isinstance(result, BaseException):
                problems.append(f"{what} is unreachable: {type(result).__name__}: {result}")
        return problems

    async def _check_postgres(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn(), timeout=CHECK_TIMEOUT_S)
        await conn.close()

    async def _check_redis(self) -> None:
        from redis.asyncio import Redis

        redis = Redis.from_url(self.redis_url, socket_connect_timeout=CHECK_TIMEOUT_S)
        try:
            await redis.ping()
        finally:
            await redis.aclose()

    async def _check_rabbitmq(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(self.rabbitmq_url, timeout=CHECK_TIMEOUT_S)
        await connection.close()


def _programs() -> list[str]:
    found = []
    if nginx_binary() is None:
        found.append("nginx is not installed (apt-get install nginx-light)")
    if mosquitto_binary() is None or dynsec_plugin() is None or not shutil.which("mosquitto_ctrl"):
        found.append(
            "Mosquitto 2 with its dynamic-security plugin and mosquitto_ctrl is not installed "
            "(apt-get install mosquitto)"
        )
    return found
