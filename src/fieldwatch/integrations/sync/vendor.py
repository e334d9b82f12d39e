"""Calls to the vendor of one connection with a fresh access token.

Each request first takes its share of the connector's rate budgets (``budget``), and a
vendor's Retry-After pauses them. The access token read (``TokenSource``: good for at
least ``SKEW_S`` more seconds) is used for the session's requests during half of that
time, then read again. A 401 (the vendor revoked or rotated the token before its
expiry) reads the stored token again: one newer than the refused one (another process
refreshed) is tried; else the 401 forces one refresh and one more try. A refresh refused
with ``invalid_grant`` then raises ``ConnectionUnusable`` (the connection needs
authorising again), vendor trouble ``RefreshFailed``.
"""

from __future__ import annotations

import functools
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import httpx

from fieldwatch.core.settings import Settings
from fieldwatch.integrations.connections.tokens import SKEW_S, TokenSource
from fieldwatch.integrations.connectors.base import DataConnector, VendorError, endpoints
from fieldwatch.integrations.sync.budget import BUDGETS, BudgetExhausted, Budgets

T = TypeVar("T")
TIMEOUT_S = 30.0
#: How long an access token read is used before it is read again.
TOKEN_REUSE_S = SKEW_S / 2


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every session of the process (making one reads the
    CA bundle: some 20 ms of CPU per sync run otherwise)."""
    return httpx.create_ssl_context()


class VendorSession:
    def __init__(
        self,
        tokens: TokenSource,
        settings: Settings,
        connector: DataConnector,
        connection_id: uuid.UUID,
        budgets: Budgets = BUDGETS,
    ) -> None:
        self.tokens = tokens
        self.budgets = budgets
        budgets.share = settings.sync_budget_share
        self.connector = connector
        self.connection_id = connection_id
        app = settings.vendor_app(connector.info.type)
        self.http = httpx.AsyncClient(
            base_url=endpoints(connector, app).api,
            timeout=TIMEOUT_S,
            follow_redirects=False,
            verify=_tls(),
        )
        self._token: str | None = None
        self._token_until = 0.0

    async def _access_token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_until:
            token = await self.tokens.access_token(self.connection_id)
            self._token = str(token["access_token"])
            self._token_until = time.monotonic() + TOKEN_REUSE_S
        return self._token

    async def call(self, fn: Callable[[httpx.AsyncClient, str], Awaitable[T]]) -> T:
        refused = await self._access_token()
        try:
            return await self._budgeted(fn, refused)
        except VendorError as exc:
            if exc.status != 401:
                raise
        self._token = None
        token = await self._access_token()
        if token == refused:  # still the stored one: the vendor no longer takes it
            await self.tokens.invalidate(self.connection_id)
            self._token = None
            token = await self._access_token()
        return await self._budgeted(fn, token)

    async def _budgeted(self, fn: Callable[[httpx.AsyncClient, str], Awaitable[T]],
                        token: str) -> T:  # fmt: skip
        kind = self.connector.info.type
        await self.budgets.take(kind, str(self.connection_id))
        try:
            return await fn(self.http, token)
        except VendorError as exc:
            if exc.retry_after and not isinstance(exc, BudgetExhausted):
                self.budgets.pause(kind, exc.retry_after)
            raise

    async def __aenter__(self) -> VendorSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()
