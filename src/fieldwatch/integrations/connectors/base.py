"""What a connector implements: where its vendor's OAuth endpoints are, how it learns
the account's id, which devices the account has and how it reads each data type.

Reads are paged: ``fetch`` returns one page of samples (in time order) and the vendor's
token for the next page. A vendor's refusal or trouble is a ``VendorError`` with its
HTTP status and ``Retry-After`` (seconds) where it sent one; network trouble stays an
``httpx.TransportError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

import httpx

from fieldwatch.core.settings import Settings, VendorApp
from fieldwatch.integrations.connectors.catalogue import ConnectorInfo


class VendorError(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"the vendor answered HTTP {status}")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class VendorDevice:
    """A device of the vendor account (a ring, a watch, a scale)."""

    id: str
    model: str | None
    firmware_version: str | None
    title: str
    #: What it is, where the vendor has several kinds (``scale``, ``bpm``…): the
    #: imported device's type is then ``<connector>_<kind>``.
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement as the vendor gave it: ``ts`` keeps the vendor's UTC offset;
    ``value`` is None where the vendor sent none; ``vendor_id`` where it names the
    record."""

    ts: datetime
    value: float | None
    vendor_id: str | None = None


@dataclass(frozen=True, slots=True)
class DataPage:
    samples: list[Sample]
    next_token: str | None


def retry_after(answer: httpx.Response) -> float | None:
    raw = answer.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def checked(answer: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer, else ``VendorError``."""
    if answer.status_code >= 300:
        raise VendorError(answer.status_code, retry_after(answer))
    body = answer.json()
    if not isinstance(body, dict):
        raise VendorError(502)
    return body


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


class DataConnector(Connector, Protocol):
    """A connector Fieldwatch can sync data from."""

    #: The metrics (``integrations.metrics``) ``fetch`` can read.
    fetchable: ClassVar[tuple[str, ...]]

    async def devices(self, http: httpx.AsyncClient, token: str) -> list[VendorDevice]: ...

    async def fetch(
        self,
        http: httpx.AsyncClient,
        token: str,
        metric: str,
        start: datetime,
        end: datetime,
        page_token: str | None,
    ) -> DataPage:
        """One page of ``metric``'s samples measured from ``start`` to ``end``."""
        ...


def endpoints(connector: Connector, app: VendorApp) -> Endpoints:
    """The vendor's addresses. The token and revocation endpoints are on the API's host
    unless the connector names another (``token_base``, e.g. Google's) or the app's
    ``token_url`` does; with ``api_url`` set and no ``token_url``, they follow it."""
    auth = (app.auth_url or connector.auth_base).rstrip("/")
    api = (app.api_url or connector.api_base).rstrip("/")
    own_token = None if app.api_url else getattr(connector, "token_base", None)
    token = (app.token_url or own_token or api).rstrip("/")
    revoke = f"{token}{connector.revoke_path}" if connector.revoke_path else None
    return Endpoints(f"{auth}{connector.authorize_path}", f"{token}{connector.token_path}",
                     revoke, api)  # fmt: skip


def app_of(settings: Settings, connector: Connector) -> VendorApp:
    return settings.vendor_app(connector.info.type)
