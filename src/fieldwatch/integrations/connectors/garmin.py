"""Garmin Health API: OAuth 2 with PKCE (the flow Garmin moves its partners to in
2027), the account's id, backfill requests and pulls of a ping's callback address.

Garmin sends the data: it *pushes* summaries to our callback endpoints, or *pings*
them with a callback address we then *pull* (``integrations.garmin``). Nothing is
fetched on a schedule (``fetchable`` is empty): a device's first sync asks Garmin to
send ``sync_historical_days`` of history again (``backfill``, at most 90 days a
request per summary type), which arrives as pushes or pings. Garmin has no device
list in this API: the account is imported as one device (``garmin_wearable``).

The user's grant has permissions (``HEALTH_EXPORT``, ``ACTIVITY_EXPORT``…) the user
may withdraw at Garmin (a ``userPermissionsChange`` notification): every summary type
read here needs ``HEALTH_EXPORT``. Disconnecting deletes the user's registration
(``DELETE /wellness-api/rest/user/registration``, answered 204; Garmin then sends a
deregistration notification and stops sending the user's data).
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
REGISTRATION = "/wellness-api/rest/user/registration"
BACKFILL = "/wellness-api/rest/backfill/{kind}"
#: Summary types Fieldwatch reads: the name in a push or ping body → in the API's paths.
SUMMARY_TYPES = {"dailies": "dailies", "sleeps": "sleeps", "pulseox": "pulseOx",
                 "allDayRespiration": "respiration", "bodyComps": "bodyComps"}  # fmt: skip
#: The metrics each summary type brings (``garmin.summaries``).
SUMMARY_METRICS: dict[str, tuple[str, ...]] = {
    "dailies": ("heart_rate", "steps", "distance", "resting_heart_rate"),
    "sleeps": ("sleep_duration",), "pulseox": ("spo2",),
    "allDayRespiration": ("respiratory_rate",), "bodyComps": ("body_weight",),
}  # fmt: skip
#: The permission of the user's grant each summary type needs.
HEALTH_EXPORT = "HEALTH_EXPORT"
#: Every permission a Garmin grant names (a list without one of them withdrew it).
PERMISSIONS = ("ACTIVITY_EXPORT", HEALTH_EXPORT, "WORKOUT_IMPORT", "COURSE_IMPORT",
               "MCT_EXPORT")  # fmt: skip
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


def permitted(permissions: list[str] | None) -> set[str]:
    """The metrics a grant with these permissions may bring (None: not known yet, so
    every one, as at connection)."""
    if permissions is None or HEALTH_EXPORT in permissions:
        return {m for ms in SUMMARY_METRICS.values() for m in ms}
    return set()


def known_permissions(scopes: list[str]) -> list[str] | None:
    """The Garmin permissions among a connection's scopes, where Garmin reported them
    (None: none recorded: the grant as given at connection)."""
    found = [s for s in scopes if s in PERMISSIONS]
    return found or None


def summary_kinds(metrics: list[str] | tuple[str, ...]) -> list[str]:
    """The summary types (as named in a push) that bring any of ``metrics``."""
    return [k for k, ms in SUMMARY_METRICS.items() if set(ms) & set(metrics)]


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
        self, start: datetime, end: datetime, metrics: list[str], http: httpx.AsyncClient,
        token: str,
    ) -> int:  # fmt: skip
        """Ask Garmin to send the summaries from ``start`` to ``end`` again (each type
        bringing one of ``metrics``, the consented ones, in ranges of at most 90 days);
        the number of requests Garmin accepted (202; a range asked for already answers
        409 and counts as done)."""
        accepted = 0
        for kind in (SUMMARY_TYPES[k] for k in summary_kinds(metrics)):
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

    async def deregister(self, http: httpx.AsyncClient, token: str) -> None:
        """End the user's registration with the app (the grant, at Garmin): 204; one
        that is gone already (404) counts as done."""
        answer = await http.delete(REGISTRATION, headers=_auth(token))
        if answer.status_code >= 300 and answer.status_code != 404:
            raise VendorError(answer.status_code, retry_after(answer))

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


__all__ = [
    "SUMMARY_METRICS",
    "SUMMARY_TYPES",
    "GarminConnector",
    "known_permissions",
    "permitted",
    "same_origin",
    "summary_kinds",
]
