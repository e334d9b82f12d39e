"""Device credentials and access rules on an external Mosquitto 2 (``FIELDWATCH_MQTT_URL``)
through its dynamic-security plugin.

Commands go to ``$CONTROL/dynamic-security/v1`` as ``{"commands": [...]}``; the broker
answers on ``$CONTROL/dynamic-security/v1/response`` with ``{"responses": [...]}``. Each
command carries a ``correlationData`` so replies to other admin clients are ignored.
The admin connection is a paho-mqtt client on its own network thread; the methods are
async.

What the broker holds:

* a client per device (username = device id, password = its agent token, ``textname`` =
  the token's id) with its own role ``fieldwatch-device-{id}``: Mosquitto 2.0 does not
  substitute ``%u``/``%c`` in dynamic-security ACLs, so one shared device role cannot
  limit a device to its own topics;
* a client ``provision`` (password = the provisioning key) with role
  ``fieldwatch-provision``;
* optional control and service clients with roles ``fieldwatch-control`` and
  ``fieldwatch-service``;
* default access "deny" for publishing, receiving and subscribing (unsubscribing stays
  allowed): anything not granted by a role is refused. Clients created by other means
  need roles that grant what they do.

Changing a client's password, disabling or deleting it makes Mosquitto drop the clients
connected with that username.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import ssl
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import PrincipalKind, dynsec_role_acls

log = logging.getLogger(__name__)

COMMAND_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
DEVICE_ROLE_PREFIX = "fieldwatch-device-"
PROVISION_USERNAME = "provision"
ROLES: dict[PrincipalKind, str] = {
    "provision": "fieldwatch-provision",
    "control": "fieldwatch-control",
    "service": "fieldwatch-service",
}
DEFAULT_ACCESS = [
    {"acltype": "publishClientSend", "allow": False},
    {"acltype": "publishClientReceive", "allow": False},
    {"acltype": "subscribe", "allow": False},
    {"acltype": "unsubscribe", "allow": True},
]

_EXISTS = "already exists"
_NOT_FOUND = "not found"


class DynsecError(Exception):
    """A dynamic-security command failed; ``error`` is the broker's text."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic security {command} failed: {error}")
        self.command = command
        self.error = error


def device_role(device_id: str) -> str:
    """The role holding one device's ACLs."""
    if not topics.is_valid_id(device_id):
        raise ValueError(f"invalid device id: {device_id!r}")
    return DEVICE_ROLE_PREFIX + device_id


def _fingerprint(secret: str) -> str:
    """Tells whether a stored password changed, without revealing it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


class DynsecManager:
    """Admin connection to Mosquitto's dynamic-security plugin."""

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
            client_id=client_id or f"fieldwatch-dynsec-{secrets.token_hex(4)}",
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
    ) -> DynsecManager:
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

    async def _get_client(self, username: str) -> dict[str, Any] | None:
        response = await self._one({"command": "getClient", "username": username}, _NOT_FOUND)
        if response.get("error"):
            return None
        client = response.get("data", {}).get("client")
        return client if isinstance(client, dict) else None

    async def _ensure_role(self, rolename: str, acls: list[dict[str, Any]]) -> None:
        created = await self._one(
            {"command": "createRole", "rolename": rolename, "acls": acls}, _EXISTS
        )
        if created.get("error"):
            await self._one({"command": "modifyRole", "rolename": rolename, "acls": acls})

    async def _ensure_client(
        self, username: str, password: str, rolename: str, textname: str
    ) -> bool:
        """Create the client, or update it when its ``textname`` (the credential's id)
        differs; returns whether anything changed."""
        roles = [{"rolename": rolename}]
        created = await self._one(
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "textname": textname,
                "roles": roles,
            },
            _EXISTS,
        )
        if not created.get("error"):
            return True
        client = await self._get_client(username) or {}
        commands: list[dict[str, Any]] = []
        if client.get("textname") != textname:
            # setClientPassword also drops the clients connected with the old password
            commands += [
                {"command": "setClientPassword", "username": username, "password": password},
                {"command": "modifyClient", "username": username, "textname": textname},
            ]
        if rolename not in {r.get("rolename") for r in client.get("roles", [])}:
            commands.append({"command": "addClientRole", "username": username, **roles[0]})
        if commands:
            await self.execute(commands)
        return bool(commands)

    # -- public API ------------------------------------------------------------------

    async def ensure_roles(self) -> None:
        """Create (or refresh) the provision, control and service roles and make
        everything not granted denied. Idempotent."""
        for kind, rolename in ROLES.items():
            await self._ensure_role(rolename, dynsec_role_acls(kind))
        await self._one({"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS})

    async def upsert_device(self, device_id: str, token: str, token_id: str) -> None:
        """Let ``device_id`` connect with ``token``: creates its role and client, or sets
        the new token (dropping sessions that used the old one) when ``token_id``
        differs from the one the broker holds. Does not enable a disabled device."""
        role = device_role(device_id)
        if not token or not token_id:
            raise ValueError("a device needs a token and its id")
        await self._ensure_role(role, dynsec_role_acls("device", device_id))
        if await self._ensure_client(device_id, token, role, token_id):
            log.info("MQTT broker: device %s now uses token %s", device_id, token_id)

    async def device_token_id(self, device_id: str) -> str | None:
        """The id of the token the broker holds for ``device_id``, if any."""
        client = await self._get_client(device_id)
        textname = client.get("textname") if client else None
        return str(textname) if textname else None

    async def disable_device(self, device_id: str) -> None:
        """Refuse the device's connections from now on and drop its live ones."""
        await self._one({"command": "disableClient", "username": device_id}, _NOT_FOUND)

    async def enable_device(self, device_id: str) -> None:
        await self._one({"command": "enableClient", "username": device_id}, _NOT_FOUND)

    async def delete_device(self, device_id: str) -> None:
        """Remove the device's client (dropping its sessions) and role. Idempotent."""
        await self.execute(
            [
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": device_role(device_id)},
            ],
            tolerate=(_NOT_FOUND,),
        )

    async def set_provisioning_key(self, key: str, key_id: str | None = None) -> None:
        """The ``provision`` client's password (a workspace provisioning key); with
        ``key_id``, the broker also holds the key's id (``provisioning_key_id``)."""
        if key_id is None:
            await self.upsert_service_client(PROVISION_USERNAME, key, "provision")
            return
        await self._ensure_client(PROVISION_USERNAME, key, ROLES["provision"], key_id)
        await self.enable_device(PROVISION_USERNAME)  # a revoked key may have disabled it

    async def provisioning_key_id(self) -> str | None:
        """The id of the provisioning key the broker holds, if it was set with one."""
        return await self.device_token_id(PROVISION_USERNAME)

    async def upsert_service_client(
        self, username: str, password: str, kind: Literal["provision", "control", "service"]
    ) -> None:
        """A client with the role of ``kind``; its password is only reset (dropping its
        sessions) when it changed."""
        if not password:
            raise ValueError("a password is required")
        await self._ensure_client(username, password, ROLES[kind], _fingerprint(password))

    async def kick(self, username: str) -> bool:
        """Drop the live connections of ``username`` (it may reconnect). Returns False
        if there is no such client or it is disabled (and so already dropped)."""
        if username == self.username:
            raise ValueError("refusing to kick the admin connection")
        client = await self._get_client(username)
        if client is None or client.get("disabled"):
            return False
        await self.execute(
            [
                {"command": "disableClient", "username": username},
                {"command": "enableClient", "username": username},
            ]
        )
        return True

    async def __aenter__(self) -> DynsecManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
