"""What a connector implements: where its vendor's OAuth endpoints are, how it learns
the account's id, and (later) how it reads each data type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx

from fieldwatch.core.settings import Settings, VendorApp
from fieldwatch.integrations.connectors.catalogue import ConnectorInfo


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorize: str
    token: str
    revoke: str | None
    api: str


class Connector(Protocol):
    info: ClassVar[ConnectorInfo]
    #: The vendor's own addresses; ``VendorApp.auth_url``/``api_url`` replace the bases.
    auth_base: ClassVar[str]
    api_base: ClassVar[str]
    authorize_path: ClassVar[str]
    token_path: ClassVar[str]
    revoke_path: ClassVar[str | None]
    scopes: ClassVar[tuple[str, ...]]

    async def account_id(self, http: httpx.AsyncClient, token: dict[str, Any]) -> str:
        """The vendor's id of the account the token belongs to."""
        ...


def endpoints(connector: Connector, app: VendorApp) -> Endpoints:
    auth = (app.auth_url or connector.auth_base).rstrip("/")
    api = (app.api_url or connector.api_base).rstrip("/")
    revoke = f"{api}{connector.revoke_path}" if connector.revoke_path else None
    return Endpoints(f"{auth}{connector.authorize_path}", f"{api}{connector.token_path}",
                     revoke, api)  # fmt: skip


def app_of(settings: Settings, connector: Connector) -> VendorApp:
    return settings.vendor_app(connector.info.type)
