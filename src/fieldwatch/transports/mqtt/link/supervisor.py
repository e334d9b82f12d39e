"""The MQTT link's connection loop: connect, wait for the connection to drop, reconnect
with exponential backoff and jitter, and run the ``on_connect`` hooks after each
connect."""

from __future__ import annotations

import asyncio
import logging
import os
import random

from fieldwatch.transports.mqtt.link.driver import LinkDriver
from fieldwatch.transports.mqtt.link.messages import ConnectHook, MqttConnectError
from fieldwatch.transports.mqtt.link.options import MqttLinkOptions

log = logging.getLogger(__name__)


class Supervisor:
    """Keeps one connection up. The link resolves ``connack`` when the CONNACK comes
    and sets ``lost`` when the connection drops."""

    def __init__(
        self, options: MqttLinkOptions, driver: LinkDriver, hooks: list[ConnectHook]
    ) -> None:
        self.options = options
        self.driver = driver
        self.hooks = hooks
        self.lost = asyncio.Event()
        self.connack: asyncio.Future[bool] | None = None

    async def run(self, first: asyncio.Future[None]) -> None:
        """Connect, wait for the connection to drop, reconnect with backoff. ``first``
        gets the outcome of the first connect (an error once ``connect_timeout`` is
        spent or the broker refuses)."""
        options, driver = self.options, self.driver
        loop = driver.loop
        delay = options.min_reconnect_delay
        began = loop.time()
        while not driver.closing:
            try:
                session_present = await self._connect()
            except (OSError, TimeoutError, MqttConnectError) as exc:
                reason = _describe(exc)
                if not first.done():
                    refused = isinstance(exc, MqttConnectError) and exc.refused
                    if refused or loop.time() - began + delay > options.connect_timeout:
                        first.set_exception(
                            MqttConnectError(
                                f"cannot connect to the MQTT broker at {options.where}: {reason}",
                                refused=refused,
                            )
                        )
                        return
                log.warning(
                    "MQTT link: connecting to %s failed (%s); retrying in %.1fs",
                    options.where,
                    reason,
                    delay,
                )
                driver.detach()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 (jitter)
                delay = min(delay * 2, options.max_reconnect_delay)
                continue
            delay = options.min_reconnect_delay
            log.info(
                "MQTT link connected to %s as %r (session present: %s)",
                options.where,
                options.client_id,
                session_present,
            )
            await self._run_hooks(session_present)
            if not first.done():
                first.set_result(None)
            await self.lost.wait()

    async def _connect(self) -> bool:
        """One attempt; returns the session-present flag."""
        options, driver = self.options, self.driver
        self.lost.clear()
        driver.detach()
        connack: asyncio.Future[bool] = driver.loop.create_future()
        self.connack = connack
        await driver.open()
        try:
            return await asyncio.wait_for(connack, options.connect_timeout)
        except TimeoutError as exc:
            raise MqttConnectError(
                f"no CONNACK within {options.connect_timeout:g}s{driver.no_connack_hint}"
            ) from exc
        finally:
            self.connack = None

    async def _run_hooks(self, session_present: bool) -> None:
        for hook in list(self.hooks):
            try:
                await hook(session_present)
            except Exception:
                log.exception("MQTT link on_connect hook %r failed", hook)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ConnectionError) and exc.errno:  # the same words for either client
        text = f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__
