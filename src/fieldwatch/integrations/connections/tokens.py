"""Fresh access tokens for syncs, refreshed one at a time per connection.

Vendors whose refresh tokens are single-use (Oura) or rotate (Withings) revoke a grant
when two refreshes race: so a refresh takes the connection's lease first (a conditional
UPDATE, good across processes and databases), then looks again (another process may
have refreshed meanwhile) and only then asks the vendor. A connection becomes
``auth_required`` only when the vendor answers ``invalid_grant`` *and* nobody else
refreshed since the tokens were read; a network error or a vendor's 5xx leaves it
``active`` (the sync retries later).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.connections.repository import ConnectionRepository
from fieldwatch.integrations.connections.service import credentials_context, token_expiry
from fieldwatch.integrations.connectors.registry import oauth_connector
from fieldwatch.integrations.crypto import KeyRing
from fieldwatch.integrations.models import Connection
from fieldwatch.integrations.oauth import OAuthFlow, VendorRefused, VendorUnreachable

log = logging.getLogger(__name__)

LEASE_S = 60.0
#: A token this close to its expiry is refreshed before use.
SKEW_S = 120.0
WAIT_STEP_S = 0.2


class ConnectionUnusable(Exception):
    """The connection cannot sync until someone acts (re-authorise, reconnect)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RefreshFailed(Exception):
    """A refresh that failed for now (network, vendor trouble): retry later."""


class TokenSource:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        settings: Settings,
        ring: KeyRing,
        *,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.uow_factory = uow_factory
        self.settings = settings
        self.ring = ring
        self.owner = owner
        self.clock = clock

    def _open(self, connection: Connection) -> dict[str, Any]:
        if connection.credentials is None:
            raise ConnectionUnusable("auth_required", "no credentials: authorise it again")
        opened = self.ring.open(connection.credentials, credentials_context(connection))
        return dict(json.loads(opened))

    def _fresh(self, connection: Connection) -> bool:
        expires = connection.token_expires_at
        return expires is None or expires > self.clock() + timedelta(seconds=SKEW_S)

    async def _read(self, connection_id: uuid.UUID) -> Connection:
        async with self.uow_factory() as uow:
            connection = await ConnectionRepository(uow.session).by_id(connection_id)
        if connection is None:
            raise ConnectionUnusable("revoked", "the connection was removed")
        if connection.status != "active":
            raise ConnectionUnusable(
                connection.status, connection.status_reason or connection.status
            )
        return connection

    async def access_token(self, connection_id: uuid.UUID) -> dict[str, Any]:
        """A token good for at least ``SKEW_S`` seconds (refreshed here if needed)."""
        deadline = asyncio.get_running_loop().time() + LEASE_S * 2
        while True:
            connection = await self._read(connection_id)
            if self._fresh(connection):
                return self._open(connection)
            now = self.clock()
            async with self.uow_factory() as uow:
                took = await ConnectionRepository(uow.session).take_refresh_lease(
                    connection_id, self.owner, now, now + timedelta(seconds=LEASE_S)
                )
                await uow.commit()
            if took:
                return await self._refresh_holding_lease(connection_id)
            if asyncio.get_running_loop().time() > deadline:
                raise RefreshFailed("another process has been refreshing for too long")
            await asyncio.sleep(WAIT_STEP_S)  # another process refreshes: read its result

    async def invalidate(self, connection_id: uuid.UUID) -> None:
        """The vendor answered 401 to the access token: refresh it before the next use."""
        async with self.uow_factory() as uow:
            await ConnectionRepository(uow.session).expire_token(connection_id, self.clock())
            await uow.commit()

    async def _refresh_holding_lease(self, connection_id: uuid.UUID) -> dict[str, Any]:
        try:
            connection = await self._read(connection_id)
            if self._fresh(connection):  # refreshed by another process before our lease
                await self._end_lease(connection_id)
                return self._open(connection)
            token = self._open(connection)
            new = await self._ask_vendor(connection, token)
        except BaseException:
            await self._end_lease(connection_id)
            raise
        new.setdefault("refresh_token", token.get("refresh_token"))
        async with self.uow_factory() as uow:
            sealed = self.ring.seal(json.dumps(new).encode(), credentials_context(connection))
            stored = await ConnectionRepository(uow.session).store_tokens(
                connection_id, self.owner, credentials=sealed,
                expires_at=token_expiry(new), status="active", reason=None,
            )  # fmt: skip
            await uow.commit()
        if not stored:
            log.warning("refresh lease ran out before the new tokens were stored",
                        extra={"connection": str(connection_id)})  # fmt: skip
        return new

    async def _ask_vendor(self, connection: Connection, token: dict[str, Any]) -> dict[str, Any]:
        connector = oauth_connector(connection.connector)
        if connector is None:
            raise ConnectionUnusable("sunset", f"no connector {connection.connector!r}")
        flow = OAuthFlow(self.settings, connector, self.settings.vendor_app(connection.connector))
        try:
            return await flow.refresh(str(token.get("refresh_token") or ""))
        except VendorUnreachable as exc:
            raise RefreshFailed(f"vendor unreachable: {exc}") from None
        except VendorRefused as exc:
            if exc.error != "invalid_grant":
                raise RefreshFailed(f"vendor refused the refresh: {exc.error}") from None
            await self._lose_grant(connection, exc)
            raise ConnectionUnusable("auth_required", "the vendor revoked the grant") from None

    async def _lose_grant(self, connection: Connection, exc: VendorRefused) -> None:
        async with self.uow_factory() as uow:
            repo = ConnectionRepository(uow.session)
            current = await repo.by_id(connection.id)
            if current is not None and current.token_version != connection.token_version:
                return  # someone stored newer tokens: the refusal was of a stale token
            await repo.store_tokens(
                connection.id, self.owner, credentials=None, expires_at=None,
                status="auth_required", reason=f"the vendor refused the refresh ({exc.error})",
            )  # fmt: skip
            await uow.commit()
        log.warning(
            "connection needs authorising again",
            extra={"connection": str(connection.id), "connector": connection.connector},
        )

    async def _end_lease(self, connection_id: uuid.UUID) -> None:
        async with self.uow_factory() as uow:
            await ConnectionRepository(uow.session).end_lease(connection_id, self.owner)
            await uow.commit()
