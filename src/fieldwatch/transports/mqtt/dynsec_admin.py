"""An admin connection to Mosquitto's dynamic-security plugin: commands go to
``$CONTROL/dynamic-security/v1`` as ``{"commands": [...]}``; the broker answers on
``$CONTROL/dynamic-security/v1/response`` with ``{"responses": [...]}``. Each command
carries a ``correlationData`` so replies to other admin clients are ignored. The
connection is a paho-mqtt client on its own network thread; the methods are async.
What Fieldwatch keeps there is ``dynsec.DynsecManager``'s business."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
from collections.abc import Iterable
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

COMMAND_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"


class DynsecError(Exception):
    """A dynamic-security command failed; ``error`` is the broker's text."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic security {command} failed: {error}")
        self.command = command
        self.error = error


class DynsecAdmin:
    """Runs dynamic-security commands; ``start`` connects, ``stop`` disconnects."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        client_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.timeout = timeout
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"fieldwatch-dynsec-{secrets.token_hex(16)}",
            protocol=paho.MQTTv311,
        )
        self._client.username_pw_set(username, password)
        if ssl_context is not None:
            self._client.tls_set_context(ssl_context)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._refused: str | None = None
        self._sub_mid: int | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._started = False

    @classmethod
    def from_url(
        cls, url: str, *, username: str | None = None, password: str | None = None, **kw: Any
    ) -> Self:
        """From ``mqtt://user:password@host:1883`` (``mqtts://`` for TLS); explicit
        ``username``/``password`` win over the URL's."""
        parts = urlsplit(url)
        secure = parts.scheme in ("mqtts", "ssl", "tls")
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl", "tls") or not parts.hostname:
            raise ValueError(f"not an MQTT URL: {parts.scheme}://{parts.hostname}")
        user = username if username is not None else unquote(parts.username or "")
        secret = password if password is not None else unquote(parts.password or "")
        if not user:
            raise ValueError("the dynamic-security admin needs a username")
        if secure and "ssl_context" not in kw:
            kw["ssl_context"] = ssl.create_default_context()
        port = parts.port or (8883 if secure else 1883)
        return cls(parts.hostname, port, user, secret, **kw)

    # -- connection ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and subscribe to the responses; raises ``DynsecError`` if the broker
        refuses the admin."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._refused = None
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._started = True
        try:
            async with asyncio.timeout(self.timeout):
                await self._ready.wait()
        except TimeoutError:
            await self.stop()
            raise DynsecError("connect", self._refused or "no answer from the broker") from None
        if self._refused:
            reason = self._refused
            await self.stop()
            raise DynsecError("connect", reason)

    async def stop(self) -> None:
        """Disconnect; pending commands fail."""
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DynsecError("command", "manager stopped"))
        self._pending.clear()

    def _threadsafe(self, callback: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
            client.disconnect()
            self._threadsafe(self._ready.set)
            return
        _, self._sub_mid = client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if mid != self._sub_mid:
            return
        if any(code.is_failure for code in codes):
            self._refused = "not allowed to read " + RESPONSE_TOPIC
            client.disconnect()
        self._threadsafe(self._ready.set)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if self._refused is None:
            self._threadsafe(self._ready.clear)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == RESPONSE_TOPIC:
            self._threadsafe(self._on_responses, bytes(message.payload))

    def _on_responses(self, payload: bytes) -> None:
        try:
            responses = json.loads(payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        for response in responses:
            if not isinstance(response, dict):
                continue
            future = self._pending.get(str(response.get("correlationData", "")))
            if future is not None and not future.done():
                future.set_result(response)

    # -- commands --------------------------------------------------------------------

    async def execute(
        self, commands: Iterable[dict[str, Any]], *, tolerate: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Run commands in one message and return their responses in order. A response
        with an ``error`` raises ``DynsecError`` unless the error contains one of the
        ``tolerate`` texts."""
        if not self._started:
            raise DynsecError("command", "manager not started")
        batch, futures = [], []
        loop = asyncio.get_running_loop()
        for command in commands:
            tag = secrets.token_hex(8)
            batch.append({**command, "correlationData": tag})
            futures.append(self._pending.setdefault(tag, loop.create_future()))
        try:
            async with asyncio.timeout(self.timeout):
                await self._ready.wait()
                self._client.publish(COMMAND_TOPIC, json.dumps({"commands": batch}), qos=1)
                responses = list(await asyncio.gather(*futures))
        except TimeoutError:
            raise DynsecError(batch[0]["command"], "no response from the broker") from None
        finally:
            for command in batch:
                self._pending.pop(command["correlationData"], None)
        allowed = tuple(tolerate)
        for response in responses:
            error = response.get("error")
            if error and not any(text in str(error) for text in allowed):
                raise DynsecError(str(response.get("command")), str(error))
        return responses

    async def _one(self, command: dict[str, Any], *tolerate: str) -> dict[str, Any]:
        return (await self.execute([command], tolerate=tolerate))[0]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
