"""The embedded broker's gate: the CONNECT packet is read and authenticated *before*
amqtt sees the connection, and each PUBLISH and SUBSCRIBE is checked against the
authority's ``authorize`` or, by default, the rules of ``acl.py``.

A client id held by one principal cannot be used by another, a device may use only its
own device id as client id (and takes it back from anyone else), and a last will must
name a topic the client may publish to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from amqtt.adapters import BufferReader, StreamWriterAdapter
from amqtt.mqtt.connack import NOT_AUTHORIZED, UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket

from fieldwatch.transports.mqtt.acl import Action, Principal, is_allowed
from fieldwatch.transports.mqtt.refusals import RefusedPublishes

log = logging.getLogger(__name__)

MAX_CONNECT = 64 * 1024


class Authority(Protocol):
    """Decides who a client is. It may also define ``async authorize(principal, action,
    topic) -> bool``; without it the rules of ``acl.py`` apply."""

    async def authenticate(
        self, client_id: str | None, username: str | None, password: str | None
    ) -> Principal | None: ...


Authorize = Callable[[Principal, Action, str], Awaitable[bool]]
Owner = Callable[[str], Principal | None]


class Gate:
    """Authenticates CONNECT packets and authorizes topics. ``owner`` tells who holds a
    client id (a live connection or a kept session); ``refusals`` counts and logs the
    PUBLISHes refused."""

    def __init__(
        self, authority: Authority, owner: Owner, refusals: RefusedPublishes | None = None
    ) -> None:
        self.authority = authority
        self._owner = owner
        self.refusals = refusals or RefusedPublishes()
        self._authorize_hook: Authorize | None = getattr(authority, "authorize", None)

    async def admit(
        self, raw: bytes, out: StreamWriterAdapter
    ) -> tuple[Principal, ConnectPacket] | None:
        """Authenticate a CONNECT packet; answer and return ``None`` when refused."""
        if protocol(raw) != (b"MQTT", 4):
            await refuse(out, UNACCEPTABLE_PROTOCOL_VERSION)
            return None
        try:
            connect = await ConnectPacket.from_stream(BufferReader(raw))
        except Exception:
            return None
        client_id, username = connect.client_id, connect.username
        principal, reason = None, "bad credentials"
        if username:
            try:
                principal = await self.authority.authenticate(
                    None if connect.client_id_is_random else client_id, username, connect.password
                )
            except Exception:
                log.exception("MQTT authority failed for username %r", username)
                reason = "authority error"
        else:
            reason = "anonymous"
        if principal is not None:
            reason = await self._vet(principal, connect)
        if reason:
            log.info(
                "MQTT connection refused (%s): client id %r, username %r",
                reason,
                client_id,
                username,
            )
            await refuse(out, NOT_AUTHORIZED)
            return None
        assert principal is not None
        return principal, connect

    async def _vet(self, principal: Principal, connect: ConnectPacket) -> str:
        """Why an authenticated client may not connect, or ``""``."""
        client_id = None if connect.client_id_is_random else connect.client_id
        if principal.kind == "provision" and client_id != principal.name:
            return "provisioning client id is not its serial number"
        own_id = principal.kind == "device" and client_id == principal.name
        if principal.kind == "device" and client_id is not None and not own_id:
            return "a device's client id must be its device id"
        if client_id is not None:
            owner = self._owner(client_id)
            # a device id belongs to that device: it takes it back from anyone else
            if owner is not None and owner != principal and not own_id:
                return "client id in use by another principal"
        if connect.will_flag and not await self.authorize(
            principal, "publish", connect.will_topic or ""
        ):
            return "last will topic not allowed"
        return ""

    async def may_publish(self, principal: Principal, topic: str) -> bool:
        """``authorize`` for a PUBLISH; a refusal is counted and logged (``refusals``)."""
        if await self.authorize(principal, "publish", topic):
            return True
        self.refusals.refused(principal.name, topic, "acl")
        return False

    async def authorize(self, principal: Principal, action: Action, topic: str) -> bool:
        if self._authorize_hook is None:
            return is_allowed(principal, action, topic)
        try:
            return bool(await self._authorize_hook(principal, action, topic))
        except Exception:
            log.exception("MQTT authority failed to authorize %s on %r", action, topic)
            return False


async def read_connect(reader: asyncio.StreamReader) -> bytes:
    """The first packet, which must be a CONNECT of at most 64 KiB."""
    head = await reader.readexactly(1)
    if head[0] >> 4 != 1:
        raise ValueError("first packet is not CONNECT")
    header, length, shift = bytearray(head), 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        header.append(byte)
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise ValueError("bad remaining length")
    if length > MAX_CONNECT:
        raise ValueError("CONNECT too large")
    return bytes(header) + await reader.readexactly(length)


def protocol(raw: bytes) -> tuple[bytes, int]:
    """Protocol name and level of a CONNECT packet."""
    i = 1
    while raw[i] & 0x80:
        i += 1
    body = raw[i + 1 :]
    if len(body) < 3:
        return b"", 0
    size = int.from_bytes(body[:2], "big")
    if len(body) < 3 + size:
        return b"", 0
    return body[2 : 2 + size], body[2 + size]


async def refuse(out: StreamWriterAdapter, code: int) -> None:
    with contextlib.suppress(Exception):
        await ConnackPacket.build(0, code).to_stream(out)
