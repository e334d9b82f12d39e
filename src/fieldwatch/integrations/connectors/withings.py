"""Withings Public API: OAuth 2 through ``/v2/oauth2`` (``action=requesttoken``, errors
inside HTTP 200 bodies, refresh tokens that rotate), measures (``getmeas``: weight,
blood pressure, pulse, SpO2, body temperature) by epoch range paged with ``offset`` and
``more``, daily steps (``getactivity``) by date, and the account's devices
(``getdevice``).

Every answer is ``{"status": 0, "body": {...}}`` when it went well; another ``status``
is an error whatever the HTTP status said. ``status_error`` maps the documented codes
onto HTTP-like ones so the sync treats them as for any vendor: 401 (invalid token) →
401, 601 (too many requests) → 429, 2554/2555 and 5xx-like codes → 502, invalid
parameters (503) and the rest → 400. Values are ``value × 10^unit``; times are epoch
seconds measured in the account's ``timezone`` (an IANA name), which the samples keep.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from fieldwatch.integrations.connectors.base import (
    DataPage,
    Sample,
    VendorDevice,
    VendorError,
    retry_after,
)
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo

MEASURE = "/measure"
ACTIVITY = "/v2/measure"
USER = "/v2/user"
#: Withings measure types by metric.
MEASTYPES = {"body_weight": 1, "diastolic_bp": 9, "systolic_bp": 10, "heart_rate": 11,
             "spo2": 54, "body_temperature": 71}  # fmt: skip
#: The token endpoint's refusals that mean the grant (or the code) is gone.
_GRANT_LOST = ("refresh_token", "code", "invalid_grant")


def status_error(status: int, answer: httpx.Response) -> VendorError:
    """A Withings ``status`` ≠ 0 as the HTTP-like error the sync understands."""
    if status == 401:
        return VendorError(401)
    if status == 601:
        return VendorError(429, retry_after(answer) or 60.0)
    if status in (2554, 2555) or (500 <= status < 600 and status != 503):
        return VendorError(502, retry_after(answer))
    return VendorError(400)


def body_of(answer: httpx.Response) -> dict[str, Any]:
    """The ``body`` of a successful Withings answer, else ``VendorError``."""
    if answer.status_code >= 300:
        raise VendorError(answer.status_code, retry_after(answer))
    try:
        data = answer.json()
    except ValueError:
        raise VendorError(502) from None
    if not isinstance(data, dict) or not isinstance(data.get("status"), int):
        raise VendorError(502)
    if data["status"] != 0:
        raise status_error(data["status"], answer)
    body = data.get("body")
    return body if isinstance(body, dict) else {}


def token_response(answer: httpx.Response) -> httpx.Response:
    """The token endpoint's answer as OAuth 2 expects it (authlib's compliance hook):
    the token from ``body``; a refused refresh token or code → 400 ``invalid_grant``;
    601 or a server-side code → 503 (trouble for now); another refusal → 400 with
    ``withings_<status>`` (not a lost grant)."""
    try:
        data = answer.json()
    except ValueError:
        return answer
    if not isinstance(data, dict) or "status" not in data or answer.status_code >= 300:
        return answer
    status = data.get("status")
    if status == 0 and isinstance(data.get("body"), dict):
        return httpx.Response(200, json=data["body"], request=answer.request)
    error = str(data.get("error") or "").lower()
    if status == 503 and any(word in error for word in _GRANT_LOST):
        out = {"error": "invalid_grant", "error_description": "Withings refused the grant"}
        return httpx.Response(400, json=out, request=answer.request)
    if status == 601 or (isinstance(status, int) and 500 <= status < 600 and status != 503) \
            or status in (2554, 2555):  # fmt: skip
        return httpx.Response(503, json={"status": status}, request=answer.request)
    return httpx.Response(400, json={"error": f"withings_{status}"}, request=answer.request)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _zone(name: Any) -> ZoneInfo | None:
    try:
        return ZoneInfo(str(name)) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _page(offset: int, more: Any) -> str | None:
    return json.dumps({"offset": offset}) if more and offset else None


def _offset(page_token: str | None) -> int:
    return int(json.loads(page_token)["offset"]) if page_token else 0


class WithingsConnector:
    info: ClassVar[ConnectorInfo] = CONNECTORS["withings"]
    auth_base: ClassVar[str] = "https://account.withings.com"
    api_base: ClassVar[str] = "https://wbsapi.withings.net"
    authorize_path: ClassVar[str] = "/oauth2_user/authorize2"
    token_path: ClassVar[str] = "/v2/oauth2"
    revoke_path: ClassVar[str | None] = None
    scopes: ClassVar[tuple[str, ...]] = ("user.info", "user.metrics", "user.activity")
    #: OAuth quirks (see ``oauth.OAuthFlow``): extra token-request fields, the client's
    #: credentials in the body, the answer unwrapped.
    token_params: ClassVar[dict[str, str]] = {"action": "requesttoken"}
    token_auth_method: ClassVar[str] = "client_secret_post"
    scope_separator: ClassVar[str] = ","
    fetchable: ClassVar[tuple[str, ...]] = ("body_weight", "systolic_bp", "diastolic_bp",
                                            "heart_rate", "spo2", "body_temperature",
                                            "steps")  # fmt: skip

    @staticmethod
    def token_response(answer: httpx.Response) -> httpx.Response:
        return token_response(answer)

    async def account_id(self, http: httpx.AsyncClient, token: dict[str, Any]) -> str:
        """Withings names the account in the token answer (``userid``)."""
        if token.get("userid") is None:
            raise VendorError(502)
        return str(token["userid"])

    async def devices(self, http: httpx.AsyncClient, token: str) -> list[VendorDevice]:
        body = body_of(await http.post(USER, data={"action": "getdevice"}, headers=_auth(token)))
        return [
            VendorDevice(
                id=str(d["deviceid"]), model=d.get("model"), firmware_version=d.get("fw"),
                title=f"Withings {d.get('model') or d.get('type') or 'device'}",
                kind=str(d.get("type") or "device").lower().replace(" ", "_"),
            )
            for d in body.get("devices") or [] if d.get("deviceid")
        ]  # fmt: skip

    async def fetch(
        self,
        http: httpx.AsyncClient,
        token: str,
        metric: str,
        start: datetime,
        end: datetime,
        page_token: str | None,
    ) -> DataPage:
        if metric == "steps":
            return await self._steps(http, token, start, end, page_token)
        if metric not in MEASTYPES:
            raise ValueError(f"Withings: {metric} is not fetched")
        form = {"action": "getmeas", "meastype": str(MEASTYPES[metric]), "category": "1",
                "startdate": str(int(start.timestamp())), "enddate": str(int(end.timestamp())),
                "offset": str(_offset(page_token))}  # fmt: skip
        body = body_of(await http.post(MEASURE, data=form, headers=_auth(token)))
        zone = _zone(body.get("timezone")) or UTC
        samples = []
        for group in body.get("measuregrps") or []:
            ts = datetime.fromtimestamp(int(group["date"]), zone)
            for measure in group.get("measures") or []:
                if measure.get("type") == MEASTYPES[metric]:
                    value = float(measure["value"]) * 10.0 ** int(measure.get("unit", 0))
                    samples.append(Sample(ts, round(value, 6), str(group.get("grpid") or "")))
        samples.sort(key=lambda s: s.ts)
        return DataPage(samples, _page(int(body.get("offset") or 0), body.get("more")))

    async def _steps(
        self, http: httpx.AsyncClient, token: str, start: datetime, end: datetime,
        page_token: str | None,
    ) -> DataPage:  # fmt: skip
        """Daily step totals of the days that are over where they were walked (a day
        still going would be stored once with a partial total), at the day's start."""
        form = {"action": "getactivity", "data_fields": "steps",
                "startdateymd": start.date().isoformat(), "enddateymd": end.date().isoformat(),
                "offset": str(_offset(page_token))}  # fmt: skip
        body = body_of(await http.post(ACTIVITY, data=form, headers=_auth(token)))
        samples = []
        for item in body.get("activities") or []:
            zone = _zone(item.get("timezone")) or UTC
            day = date.fromisoformat(str(item["date"]))
            if day >= end.astimezone(zone).date():
                continue
            ts = datetime.combine(day, time(), zone)
            steps = item.get("steps")
            value = float(steps) if isinstance(steps, int | float) else None
            samples.append(Sample(ts, value, f"{day.isoformat()}"))
        return DataPage(samples, _page(int(body.get("offset") or 0), body.get("more")))


__all__ = ["MEASTYPES", "WithingsConnector", "body_of", "status_error"]
