"""Garmin Health API: OAuth 2 with PKCE (the flow Garmin moves its partners to in
2027), the account's id, backfill requests and pulls of a ping's callback address.

Garmin sends the data: it *pushes* summaries to our callback endpoints, or *pings*
them with a callback address we then *pull* (``integrations.garmin``). Nothing is
fetched on a schedule (``fetchable`` is empty): a device's first sync asks Garmin to
send ``sync_historical_days`` of history again (``backfill``, at most 90 days a
request per summary type), which arrives as pushes or pings. Garmin has no device
list in this API: the account is imported as one device (``garmin_wearable``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from fieldwatch.integrations.connectors.base import (
    DataPage,
    VendorDevice,
    VendorError,
    checked,
    retry_after,
)
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo

USER_ID = "/wellness-api/rest/user/id"
BACKFILL = "/wellness-api/rest/backfill/{kind}"
#: Summary types Fieldwatch reads: the name in a push or ping body → in the API's paths.
SUMMARY_TYPES = {"dailies": "dailies", "sleeps": "sleeps", "pulseox": "pulseOx",
                 "allDayRespiration": "respiration", "bodyComps": "bodyComps"}  # fmt: skip
#: The longest range one backfill request may cover.
BACKFILL_MAX = timedelta(days=90)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` is on the host (scheme, host and port) of ``base``: a ping's
    callback address is pulled only from the configured Garmin API."""
    try:
        a, b = urlsplit(url), urlsplit(base)
        return (a.scheme, a.hostname, a.port or _port(a.scheme)) == (
            b.scheme, b.hostname, b.port or _port(b.scheme)) and not a.username  # fmt: skip
    except ValueError:
        return False


def _port(scheme: str) -> int | None:
    return {"https": 443, "http": 80}.get(scheme)


class GarminConnector:
    info: ClassVar[ConnectorInfo] = CONNECTORS["garmin"]
    auth_base: ClassVar[str] = "https://connect.garmin.com"
    #: The token endpoint is on Garmin's authorization server (``__AUTH_URL`` moves it).
    token_base: ClassVar[str] = "https://diauth.garmin.com"
    api_base: ClassVar[str] = "https://apis.garmin.com"
    authorize_path: ClassVar[str] = "/oauth2Confirm"
    token_path: ClassVar[str] = "/di-oauth2-service/oauth/token"
    revoke_path: ClassVar[str | None] = None
    scopes: ClassVar[tuple[str, ...]] = ()
    token_auth_method: ClassVar[str] = "client_secret_post"
    #: Pushed, not fetched (see the module's description).
    fetchable: ClassVar[tuple[str, ...]] = ()

    async def account_id(self, http: httpx.AsyncClient, token: dict[str, Any]) -> str:
        answer = await http.get(USER_ID, headers=_auth(str(token["access_token"])))
        answer.raise_for_status()
        user = answer.json().get("userId")
        if not user:
            raise VendorError(502)
        return str(user)

    async def devices(self, http: httpx.AsyncClient, token: str) -> list[VendorDevice]:
        """The account, as one device (the Health API lists none)."""
        user = (checked(await http.get(USER_ID, headers=_auth(token)))).get("userId")
        if not user:
            raise VendorError(502)
        return [VendorDevice(id=str(user), model=None, firmware_version=None,
                             title="Garmin account", kind="wearable")]  # fmt: skip

    async def fetch(
        self, http: httpx.AsyncClient, token: str, metric: str, start: datetime, end: datetime,
        page_token: str | None,
    ) -> DataPage:  # fmt: skip
        raise ValueError(f"Garmin pushes its data: {metric} is not fetched")

    async def backfill(
        self, start: datetime, end: datetime, http: httpx.AsyncClient, token: str
    ) -> int:
        """Ask Garmin to send the summaries from ``start`` to ``end`` again (each type,
        in ranges of at most 90 days); the number of requests Garmin accepted (202; a
        range asked for already answers 409 and counts as done)."""
        accepted = 0
        for kind in SUMMARY_TYPES.values():
            left = start
            while left < end:
                right = min(end, left + BACKFILL_MAX)
                params = {"summaryStartTimeInSeconds": str(int(left.timestamp())),
                          "summaryEndTimeInSeconds": str(int(right.timestamp()))}  # fmt: skip
                answer = await http.get(BACKFILL.format(kind=kind), params=params,
                                        headers=_auth(token))  # fmt: skip
                if answer.status_code >= 300 and answer.status_code != 409:
                    raise VendorError(answer.status_code, retry_after(answer))
                accepted += 1
                left = right
        return accepted

    async def pull(self, url: str, http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
        """The summaries at a ping's callback address (checked by the caller to be on
        the configured API host)."""
        answer = await http.get(url, headers=_auth(token))
        if answer.status_code >= 300:
            raise VendorError(answer.status_code, retry_after(answer))
        body = answer.json()
        if not isinstance(body, list):
            raise VendorError(502)
        return [item for item in body if isinstance(item, dict)]


__all__ = ["SUMMARY_TYPES", "GarminConnector", "same_origin"]
