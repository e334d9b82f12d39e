"""OAuth 2 authorization code with PKCE (S256) against a vendor, through authlib.

``authorization_url`` makes the state and the code verifier (the caller keeps both, the
verifier sealed); ``exchange`` trades the code for tokens; ``refresh`` uses a refresh
token. Vendor refusals become ``VendorRefused`` (with the OAuth error code, e.g.
``invalid_grant``), network trouble ``VendorUnreachable``: only the first may cost a
connection its grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from fieldwatch.core.settings import Settings, VendorApp
from fieldwatch.integrations.connectors.base import (
    Connector,
    VendorDevice,
    VendorError,
    endpoints,
)

TIMEOUT_S = 20.0


class VendorRefused(Exception):
    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


class VendorUnreachable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str


def redirect_uri(settings: Settings, kind: str) -> str:
    return f"{settings.resolved_public_url}/api/v1/integrations/{kind}/callback"


def _oauth_error(answer: httpx.Response) -> str:
    """The OAuth error code of a refusal (``invalid_grant``…), else its HTTP status."""
    try:
        error = answer.json().get("error")
    except ValueError:
        error = None
    return str(error) if isinstance(error, str) and error else f"http_{answer.status_code}"


class OAuthFlow:
    def __init__(self, settings: Settings, connector: Connector, app: VendorApp) -> None:
        self.settings = settings
        self.connector = connector
        self.app = app
        self.endpoints = endpoints(connector, app)

    def _client(self) -> AsyncOAuth2Client:
        """An authlib client with the connector's quirks where it declares some: extra
        token-request fields (``token_params``), how the client authenticates
        (``token_auth_method``), how scopes are joined (``scope_separator``) and a
        rewrite of the token answer (``token_response``, e.g. Withings' errors inside
        HTTP 200 bodies)."""
        client = AsyncOAuth2Client(
            client_id=self.app.client_id,
            client_secret=self.app.client_secret,
            scope=getattr(self.connector, "scope_separator", " ").join(self.connector.scopes),
            redirect_uri=redirect_uri(self.settings, self.connector.info.type),
            code_challenge_method="S256",
            timeout=TIMEOUT_S,
            token_endpoint_auth_method=getattr(self.connector, "token_auth_method", None),
        )
        rewrite = getattr(self.connector, "token_response", None)
        if rewrite is not None:
            client.register_compliance_hook("access_token_response", rewrite)
            client.register_compliance_hook("refresh_token_response", rewrite)
        return client

    @property
    def _extra(self) -> dict[str, str]:
        return dict(getattr(self.connector, "token_params", None) or {})

    def authorization_url(self) -> AuthorizationRequest:
        """The consent page's address, with the connector's extra parameters where it
        declares some (``authorize_params``, e.g. Google's ``access_type=offline``)."""
        verifier = generate_token(64)
        client = self._client()
        extra = dict(getattr(self.connector, "authorize_params", None) or {})
        url, state = client.create_authorization_url(
            self.endpoints.authorize, code_verifier=verifier, **extra
        )
        return AuthorizationRequest(url, state, verifier)

    async def exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        async with self._client() as client:
            return await self._call(
                client.fetch_token(
                    self.endpoints.token, code=code, code_verifier=code_verifier, **self._extra
                )
            )

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        async with self._client() as client:
            return await self._call(
                client.refresh_token(
                    self.endpoints.token, refresh_token=refresh_token, **self._extra
                )
            )

    async def revoke(self, token: dict[str, Any]) -> None:
        """Revoke the grant at the vendor (RFC 7009: the refresh token where there is one,
        which ends the access tokens issued with it)."""
        if self.endpoints.revoke is None:
            return
        which = "refresh_token" if token.get("refresh_token") else "access_token"
        async with self._client() as client:
            try:
                answer = await client.revoke_token(self.endpoints.revoke, token=token[which],
                                                   token_type_hint=which)  # fmt: skip
            except httpx.TransportError as exc:
                raise VendorUnreachable(type(exc).__name__) from None
        if answer.status_code == 429 or answer.status_code >= 500:
            raise VendorUnreachable(f"HTTP {answer.status_code}")
        if answer.status_code >= 400:
            raise VendorRefused(_oauth_error(answer))

    @property
    def can_end_grant(self) -> bool:
        """The vendor has a way to end the grant: RFC 7009 revocation, or its own
        deregistration of the user (``deregister``, Garmin's)."""
        return self.endpoints.revoke is not None or hasattr(self.connector, "deregister")

    async def end_grant(self, token: dict[str, Any]) -> None:
        """End the grant at the vendor: its ``deregister`` with the access token (once
        more with a refreshed one if that has expired), else ``revoke``."""
        deregister = getattr(self.connector, "deregister", None)
        if deregister is None:
            await self.revoke(token)
            return
        async with httpx.AsyncClient(base_url=self.endpoints.api, timeout=TIMEOUT_S) as http:
            try:
                try:
                    await deregister(http, str(token.get("access_token") or ""))
                except VendorError as exc:
                    if exc.status != 401 or not token.get("refresh_token"):
                        raise
                    fresh = await self.refresh(str(token["refresh_token"]))
                    await deregister(http, str(fresh.get("access_token") or ""))
            except VendorError as exc:
                if exc.status == 429 or exc.status >= 500:
                    raise VendorUnreachable(f"HTTP {exc.status}") from None
                raise VendorRefused(f"http_{exc.status}") from None
            except httpx.TransportError as exc:
                raise VendorUnreachable(type(exc).__name__) from None

    async def account_id(self, token: dict[str, Any]) -> str:
        async with httpx.AsyncClient(base_url=self.endpoints.api, timeout=TIMEOUT_S) as http:
            try:
                return await self.connector.account_id(http, token)
            except httpx.HTTPStatusError as exc:
                raise VendorRefused(f"http_{exc.response.status_code}") from None
            except httpx.TransportError as exc:
                raise VendorUnreachable(type(exc).__name__) from None

    async def devices(self, token: dict[str, Any]) -> list[VendorDevice]:
        """The account's devices (a ring, a scale…) as the vendor lists them (none for a
        connector Fieldwatch does not sync from)."""
        devices = getattr(self.connector, "devices", None)
        if devices is None:
            return []
        async with httpx.AsyncClient(base_url=self.endpoints.api, timeout=TIMEOUT_S) as http:
            try:
                listed = await devices(http, str(token.get("access_token")))
            except (VendorError, httpx.HTTPError, ValueError, KeyError) as exc:
                raise VendorUnreachable(type(exc).__name__) from None
        return list(listed)

    @staticmethod
    async def _call(pending: Any) -> dict[str, Any]:
        try:
            token = await pending
        except OAuthError as exc:
            raise VendorRefused(exc.error or "oauth_error", exc.description) from None
        except httpx.HTTPStatusError as exc:
            answer = exc.response
            if answer.status_code == 429 or answer.status_code >= 500:
                raise VendorUnreachable(f"HTTP {answer.status_code}") from None
            raise VendorRefused(_oauth_error(answer), None) from None
        except httpx.TransportError as exc:
            raise VendorUnreachable(type(exc).__name__) from None
        return dict(token)
