"""Calls to the vendor of one connection with a fresh access token.

A 401 (the vendor revoked or rotated the token before its expiry) forces one refresh and
one more try; a refresh refused with ``invalid_grant`` then raises ``ConnectionUnusable``
(the connection needs authorising again), vendor trouble ``RefreshFailed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import httpx

from fieldwatch.core.settings import Settings
from fieldwatch.integrations.connections.tokens import TokenSource
from fieldwatch.integrations.connectors.base import DataConnector, VendorError, endpoints

T = TypeVar("T")
TIMEOUT_S = 30.0


class VendorSession:
    def __init__(
        self,
        tokens: TokenSource,
        settings: Settings,
        connector: DataConnector,
        connection_id: uuid.UUID,
    ) -> None:
        self.tokens = tokens
        self.connector = connector
        self.connection_id = connection_id
        app = settings.vendor_app(connector.info.type)
        self.http = httpx.AsyncClient(
            base_url=endpoints(connector, app).api, timeout=TIMEOUT_S, follow_redirects=False
        )

    async def call(self, fn: Callable[[httpx.AsyncClient, str], Awaitable[T]]) -> T:
        token = await self.tokens.access_token(self.connection_id)
        try:
            return await fn(self.http, str(token["access_token"]))
        except VendorError as exc:
            if exc.status != 401:
                raise
        await self.tokens.invalidate(self.connection_id)
        token = await self.tokens.access_token(self.connection_id)
        return await fn(self.http, str(token["access_token"]))

    async def __aenter__(self) -> VendorSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()
