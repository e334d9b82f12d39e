"""A stand-in of the Withings Public API: OAuth through ``/v2/oauth2``
(``action=requesttoken``; errors inside HTTP 200 bodies; 3 h access tokens; refresh
tokens that rotate, the old one still good for 8 h or until the new access token is
used), ``getmeas`` paged with ``offset``/``more`` and values as ``value × 10^unit``,
``getactivity`` by date, ``getdevice``, and an app-wide budget of 120 requests a minute
answered ``status: 601`` in a 200; Notify (``/notify``: subscribe after a HEAD to the
callback answered 200, revoke, list) and unsigned notifications sent to the
subscriptions (``Withings.notify``)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from standins.vendor import Grant, Vendor, oauth_app

ZONE = "Europe/Paris"
PAGE = 10  # measure groups (or days) per page


@dataclass
class Withings(Vendor):
    access_ttl_s: int = 10800
    grace_s: float = 8 * 3600
    app_limit: tuple[int, float] = (120, 60.0)
    #: Refresh tokens replaced by a refresh: their grant and until when they still work.
    old_refresh: dict[str, tuple[Grant, float]] = field(default_factory=dict)
    app_hits: deque[float] = field(default_factory=deque)
    #: How many requests were answered 601 (over the app's budget).
    refused: int = 0
    #: How Withings reaches the subscribers' callbacks (a client of the app under test).
    callback: httpx.AsyncClient | None = None
    #: Notify subscriptions: (userid, appli, callbackurl).
    notify_subs: list[tuple[str, int, str]] = field(default_factory=list)

    async def notify(self, user: str, appli: int, start: int, end: int) -> list[httpx.Response]:
        """Send a notification (a form, unsigned) to the user's subscriptions to ``appli``."""
        assert self.callback is not None
        form = {"userid": user, "appli": str(appli), "startdate": str(start),
                "enddate": str(end)}  # fmt: skip
        return [
            await self.callback.post(url, data=form)
            for u, a, url in list(self.notify_subs)
            if (u, a) == (user, appli)
        ]


def weight_g(user: str, day: date) -> int:
    """The stand-in's weigh-in of a user on a day, in grams (72.5 kg ± a little)."""
    return 72500 + ((day.toordinal() + len(user)) % 5) * 100


def steps(day: date) -> int:
    return 3000 + (day.toordinal() * 53) % 8000


def _ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"status": 0, "body": body})


def _error(status: int, error: str) -> JSONResponse:
    return JSONResponse({"status": status, "error": error})  # HTTP 200, as Withings does


def _groups(user: str, first: datetime, last: datetime) -> list[dict[str, Any]]:
    """The user's measure groups from ``first`` to ``last``: a weigh-in at 07:30 and a
    blood-pressure reading (with pulse), SpO2 and temperature at 08:00, Paris time."""
    zone = ZoneInfo(ZONE)
    out = []
    day = first.astimezone(zone).date() - timedelta(days=1)
    while day <= last.astimezone(zone).date():
        n = day.toordinal()
        at_7 = datetime(day.year, day.month, day.day, 7, 30, tzinfo=zone)
        at_8 = at_7 + timedelta(minutes=30)
        for ts, grpid, measures in (
            (at_7, n * 10 + 1, [{"value": weight_g(user, day), "type": 1, "unit": -3}]),
            (at_8, n * 10 + 2, [{"value": 120 + n % 7, "type": 10, "unit": 0},
                                {"value": 80 + n % 5, "type": 9, "unit": 0},
                                {"value": 60 + n % 9, "type": 11, "unit": 0},
                                {"value": 975, "type": 54, "unit": -1},
                                {"value": 36650, "type": 71, "unit": -3}]),
        ):  # fmt: skip
            if first <= ts <= last:
                group = {
                    "grpid": grpid,
                    "attrib": 0,
                    "date": int(ts.timestamp()),
                    "category": 1,
                    "deviceid": f"dev-{user}",
                    "measures": measures,
                }
                out.append(group)
        day += timedelta(days=1)
    return out


def _paged(items: list[Any], offset: int) -> tuple[list[Any], dict[str, Any]]:
    page = items[offset : offset + PAGE]
    more = offset + len(page) < len(items)
    return page, {"more": more, "offset": offset + len(page) if more else 0}


def withings_app(vendor: Withings) -> FastAPI:
    app = oauth_app(vendor, authorize="/oauth2_user/authorize2", token="/oauth2/unused")

    def over_budget() -> bool:
        limit, window = vendor.app_limit
        now = time.monotonic()
        while vendor.app_hits and vendor.app_hits[0] < now - window:
            vendor.app_hits.popleft()
        if len(vendor.app_hits) >= limit:
            vendor.refused += 1
            return True
        vendor.app_hits.append(now)
        return False

    def user_of(request: Request) -> str | JSONResponse:
        if over_budget():
            return _error(601, "Too many requests")
        try:
            user = vendor.user_of(request)
        except HTTPException:
            return _error(401, "invalid_token: The access token provided is invalid")
        token = request.headers["authorization"].removeprefix("Bearer ").strip()
        grant = vendor.grants[token]
        for old, (g, _) in list(vendor.old_refresh.items()):
            if g is grant:  # the new access token is used: the old refresh token dies
                del vendor.old_refresh[old]
        return user

    def issue(grant: Grant) -> JSONResponse:
        body = vendor.issue(grant)
        return _ok({**body, "userid": grant.user_id, "token_type": "Bearer"})

    @app.post("/v2/oauth2")
    async def requesttoken(request: Request) -> JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        vendor.token_calls.append(form)
        if over_budget():
            return _error(601, "Too many requests")
        if form.get("action") != "requesttoken":
            return _error(503, "Invalid Params: action")
        if (form.get("client_id"), form.get("client_secret")) != (
            vendor.client_id, vendor.client_secret):  # fmt: skip
            return _error(503, "Invalid Params: invalid client_id or client_secret")
        if form.get("grant_type") == "authorization_code":
            entry = vendor.codes.pop(form.get("code", ""), None)
            if entry is None or entry["redirect_uri"] != form.get("redirect_uri"):
                return _error(503, "Invalid Params: invalid code")
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry["challenge"]:
                return _error(503, "Invalid Params: invalid code")
            return issue(Grant(entry["user"], entry["scope"]))
        if form.get("grant_type") == "refresh_token":
            refresh = form.get("refresh_token", "")
            grant = vendor.refresh.get(refresh)
            if grant is None and refresh in vendor.old_refresh:
                grant, until = vendor.old_refresh[refresh]
                grant = grant if until > time.time() else None
            if grant is None or grant.revoked:
                return _error(503, "Invalid Params: invalid refresh_token")
            vendor.refresh.pop(grant.refresh_token, None)
            vendor.old_refresh[grant.refresh_token] = (grant, time.time() + vendor.grace_s)
            vendor.grants.pop(grant.access_token, None)
            return issue(grant)
        return _error(503, "Invalid Params: grant_type")

    @app.post("/measure")
    async def measure(request: Request) -> JSONResponse:
        user = user_of(request)
        if isinstance(user, JSONResponse):
            return user
        form = {k: str(v) for k, v in (await request.form()).items()}
        if form.get("action") != "getmeas":
            return _error(2554, "Unknown action")
        first = datetime.fromtimestamp(int(form.get("startdate") or 0), ZoneInfo("UTC"))
        last = datetime.fromtimestamp(int(form.get("enddate") or time.time()), ZoneInfo("UTC"))
        groups = _groups(user, first, last)
        if form.get("meastype"):
            kind = int(form["meastype"])
            groups = [{**g, "measures": [m for m in g["measures"] if m["type"] == kind]}
                      for g in groups]  # fmt: skip
            groups = [g for g in groups if g["measures"]]
        page, paging = _paged(groups, int(form.get("offset") or 0))
        return _ok({"updatetime": int(time.time()), "timezone": ZONE, "measuregrps": page,
                    **paging})  # fmt: skip

    @app.post("/v2/measure")
    async def activity(request: Request) -> JSONResponse:
        user = user_of(request)
        if isinstance(user, JSONResponse):
            return user
        form = {k: str(v) for k, v in (await request.form()).items()}
        if form.get("action") != "getactivity":
            return _error(2554, "Unknown action")
        first = date.fromisoformat(form["startdateymd"])
        last = date.fromisoformat(form["enddateymd"])
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        page, paging = _paged(days, int(form.get("offset") or 0))
        items = [{"date": d.isoformat(), "timezone": ZONE, "deviceid": f"dev-{user}",
                  "steps": steps(d), "brand": 18} for d in page]  # fmt: skip
        return _ok({"activities": items, **paging})

    @app.post("/notify")
    async def notify(request: Request) -> JSONResponse:
        user = user_of(request)
        if isinstance(user, JSONResponse):
            return user
        form = {k: str(v) for k, v in (await request.form()).items()}
        action, url = form.get("action"), form.get("callbackurl", "")
        if action == "list":
            return _ok(
                {
                    "profiles": [
                        {"appli": a, "callbackurl": c}
                        for u, a, c in vendor.notify_subs
                        if u == user
                    ]
                }
            )
        if action not in ("subscribe", "revoke") or not form.get("appli", "").isdigit():
            return _error(503, "Invalid Params")
        key = (user, int(form["appli"]), url)
        if action == "revoke":
            if key not in vendor.notify_subs:
                return _error(286, "No such subscription was found")
            vendor.notify_subs.remove(key)
            return _ok({})
        assert vendor.callback is not None
        if (await vendor.callback.head(url)).status_code != 200:
            return _error(293, "The callback URL is either absent or incorrect")
        if key not in vendor.notify_subs:
            vendor.notify_subs.append(key)
        return _ok({})

    @app.post("/v2/user")
    async def user_api(request: Request) -> JSONResponse:
        user = user_of(request)
        if isinstance(user, JSONResponse):
            return user
        form = {k: str(v) for k, v in (await request.form()).items()}
        if form.get("action") != "getdevice":
            return _error(2554, "Unknown action")
        return _ok({"devices": [
            {"type": "Scale", "model": "Body+", "model_id": 5, "battery": "high",
             "deviceid": f"scale-{user}", "fw": "1.2.3", "timezone": ZONE},
            {"type": "Blood Pressure Monitor", "model": "BPM Connect", "model_id": 45,
             "battery": "medium", "deviceid": f"bpm-{user}", "timezone": ZONE},
        ]})  # fmt: skip

    return app


__all__ = ["PAGE", "ZONE", "Withings", "steps", "weight_g", "withings_app"]
