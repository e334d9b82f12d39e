"""The connections the embedded broker admitted, and whose session is whose."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fieldwatch.transports.mqtt.acl import Principal
from fieldwatch.transports.mqtt.embedded.keepalive import ClientReader

PRINCIPAL = "fieldwatch.principal"  # key in amqtt's Session.attributes
FOREIGN = Principal("service", "\x00unknown")  # owner of a session we did not admit


def principal_of(session: Any) -> Principal | None:
    """The principal admitted for an amqtt session, if any."""
    principal = session.attributes.get(PRINCIPAL) if session is not None else None
    return principal if isinstance(principal, Principal) else None


@dataclass(eq=False)
class Client:
    """One admitted connection."""

    principal: Principal
    client_id: str | None  # None when the client sent none (amqtt makes one up)
    username: str | None
    peer: tuple[str, int]
    reader: ClientReader
    task: asyncio.Task[Any]


class Clients:
    """The admitted connections, by client id or, without one, by peer address."""

    def __init__(self) -> None:
        self._all: set[Client] = set()
        self._by_id: dict[str, list[Client]] = {}
        self._by_peer: dict[tuple[str, int], Client] = {}  # those without a client id

    def __iter__(self) -> Iterator[Client]:
        return iter(list(self._all))

    def add(self, client: Client) -> None:
        self._all.add(client)
        if client.client_id is None:
            self._by_peer[client.peer] = client
        else:
            self._by_id.setdefault(client.client_id, []).append(client)

    def remove(self, client: Client) -> None:
        self._all.discard(client)
        if client.client_id is None:
            self._by_peer.pop(client.peer, None)
            return
        same = self._by_id.get(client.client_id, [])
        if client in same:
            same.remove(client)
        if not same:
            self._by_id.pop(client.client_id, None)

    def clear(self) -> None:
        self._all.clear()
        self._by_id.clear()
        self._by_peer.clear()

    def with_id(self, client_id: str) -> list[Client]:
        return list(self._by_id.get(client_id, ()))

    def named(self, name: str) -> list[Client]:
        """The connections whose username or client id is ``name``."""
        return [c for c in list(self._all) if name in (c.client_id, c.username)]

    def owner(self, client_id: str, sessions: dict[str, Any] | None) -> Principal | None:
        """Who holds ``client_id``: a live connection, else the session amqtt keeps."""
        for client in self._by_id.get(client_id, ()):
            return client.principal
        entry = sessions.get(client_id) if sessions is not None else None
        if entry is None:
            return None
        owner = entry[0].attributes.get(PRINCIPAL)
        return owner if isinstance(owner, Principal) else FOREIGN

    def claim(self, session: Any) -> bool:
        """amqtt's auth hook: attach the principal admitted for this connection (found
        by client id, or by peer address when amqtt made the client id up)."""
        same = self._by_id.get(session.client_id)
        client = (
            same[-1] if same else self._by_peer.get((session.remote_address, session.remote_port))
        )
        if client is None:
            return False
        session.attributes[PRINCIPAL] = client.principal
        return True
