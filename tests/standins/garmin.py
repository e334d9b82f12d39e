"""A stand-in of the Garmin Health API: OAuth 2 with PKCE (``/oauth2Confirm``, the
token endpoint with the client's credentials in the body), the user's id, backfill
requests (202; a range asked for already 409; more than 90 days 400) and the pull
addresses a ping names (``/wellness-api/rest/{type}?…&token=…``: a pull token good for
its user only), and the deletion of a user's registration (``DELETE
/wellness-api/rest/user/registration``: 204, the grant ends). The summaries it serves
and pushes are made by ``daily``, ``sleep``, ``pulse_ox``, ``respiration`` and
``body_comp``; ``ping``, ``push`` and ``permissions_change`` build the bodies Garmin
sends to Fieldwatch's callbacks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from standins.vendor import Vendor, oauth_app

#: Where the wearer lives: summaries carry this offset from UTC (seconds).
OFFSET_S = 3600
#: Pull paths by the summary type's name in a push.
PATHS = {"dailies": "dailies", "sleeps": "sleeps", "pulseox": "pulseOx",
         "allDayRespiration": "respiration", "bodyComps": "bodyComps"}  # fmt: skip


def heart_rate(user: str, offset_s: int) -> int:
    return 58 + (offset_s // 900 + len(user)) % 30


def _start(day: date) -> int:
    """The epoch seconds of ``day``'s local midnight (at ``OFFSET_S``)."""
    return int(datetime.combine(day, time(), UTC).timestamp()) - OFFSET_S


def daily(user: str, day: date, *, complete: bool = True) -> dict[str, Any]:
    """A day's summary: heart rate every 15 minutes; a day still going covers 12 h."""
    duration = 86_400 if complete else 43_200
    return {
        "userId": user, "summaryId": f"x{user}-{_start(day):x}-{duration}",
        "calendarDate": day.isoformat(), "startTimeInSeconds": _start(day),
        "startTimeOffsetInSeconds": OFFSET_S, "durationInSeconds": duration,
        "steps": 8000 + day.toordinal() % 1000, "distanceInMeters": 6100.5,
        "restingHeartRateInBeatsPerMinute": 54, "activityType": "WALKING",
        "timeOffsetHeartRateSamples": {str(s): heart_rate(user, s)
                                       for s in range(0, duration, 900)},
    }  # fmt: skip


def sleep(user: str, day: date) -> dict[str, Any]:
    """The night before ``day``: from 23:00 local, 7 h 30 in bed, 7 h asleep."""
    start = _start(day) - 3600
    return {"userId": user, "summaryId": f"s{user}-{start:x}", "calendarDate": day.isoformat(),
            "startTimeInSeconds": start, "startTimeOffsetInSeconds": OFFSET_S,
            "durationInSeconds": 27_000, "deepSleepDurationInSeconds": 5400,
            "lightSleepDurationInSeconds": 14_400, "remSleepInSeconds": 5400,
            "awakeDurationInSeconds": 1800}  # fmt: skip


def pulse_ox(user: str, day: date) -> dict[str, Any]:
    start = _start(day)
    return {"userId": user, "summaryId": f"p{user}-{start:x}", "calendarDate": day.isoformat(),
            "startTimeInSeconds": start, "startTimeOffsetInSeconds": OFFSET_S,
            "durationInSeconds": 3 * 3600, "onDemand": False,
            "timeOffsetSpo2Values": {"0": 96, "3600": 95, "7200": 97}}  # fmt: skip


def respiration(user: str, day: date) -> dict[str, Any]:
    start = _start(day)
    return {"userId": user, "summaryId": f"r{user}-{start:x}", "startTimeInSeconds": start,
            "startTimeOffsetInSeconds": OFFSET_S, "durationInSeconds": 180,
            "timeOffsetEpochToBreaths": {"0": 14.5, "60": 14.25, "120": 15.0}}  # fmt: skip


def body_comp(user: str, day: date) -> dict[str, Any]:
    at = _start(day) + 7 * 3600
    return {"userId": user, "summaryId": f"b{user}-{at:x}", "measurementTimeInSeconds": at,
            "measurementTimeOffsetInSeconds": OFFSET_S, "weightInGrams": 72_350,
            "bodyFatInPercent": 18.5}  # fmt: skip


def permissions_change(user: str, permissions: list[str], at: int = 0) -> dict[str, Any]:
    """The body of Garmin's ``userPermissionsChange`` notification."""
    return {"userPermissionsChange": [{
        "userId": user, "summaryId": f"x{user}-{at:x}", "permissions": permissions,
        "changeTimeInSeconds": at or int(datetime.now(UTC).timestamp())}]}  # fmt: skip


def push(**summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """A push body: ``push(dailies=[…], sleeps=[…])``."""
    return dict(summaries)


@dataclass
class Garmin(Vendor):
    #: Backfills asked for: (user, summary type, start, end) in epoch seconds.
    backfills: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: What each pull token serves: (user, summary type in a push, summaries).
    uploads: dict[str, tuple[str, str, list[dict[str, Any]]]] = field(default_factory=dict)
    #: Pulls served: (user, summary type).
    pulls: list[tuple[str, str]] = field(default_factory=list)
    base_url: str = ""

    def ping(self, user: str, kind: str, summaries: list[dict[str, Any]],
             base: str | None = None) -> dict[str, Any]:  # fmt: skip
        """A ping body naming a pull address for ``summaries`` (on ``base``, the
        stand-in's own address unless another is given)."""
        token = secrets.token_urlsafe(12)
        self.uploads[token] = (user, kind, summaries)
        now = int(datetime.now(UTC).timestamp())
        url = (f"{base or self.base_url}/wellness-api/rest/{PATHS[kind]}?"
               f"uploadStartTimeInSeconds={now - 600}&uploadEndTimeInSeconds={now}"
               f"&token={token}")  # fmt: skip
        return {kind: [{"userId": user, "callbackURL": url}]}


def garmin_app(vendor: Garmin) -> FastAPI:
    app = oauth_app(vendor, authorize="/oauth2Confirm", token="/di-oauth2-service/oauth/token")

    @app.get("/wellness-api/rest/user/id")
    async def user_id(request: Request) -> dict[str, Any]:
        return {"userId": vendor.user_of(request)}

    @app.delete("/wellness-api/rest/user/registration")
    async def deregister(request: Request) -> Response:
        user = vendor.user_of(request)
        vendor.revoke(user)
        vendor.revocations.append(user)
        return Response(status_code=204)

    @app.get("/wellness-api/rest/backfill/{kind}")
    async def backfill(
        kind: str, request: Request, summaryStartTimeInSeconds: int,
        summaryEndTimeInSeconds: int,
    ) -> JSONResponse:  # fmt: skip
        user = vendor.user_of(request)
        if kind not in PATHS.values():
            return JSONResponse({"errorMessage": f"unknown summary type {kind}"}, 400)
        if summaryEndTimeInSeconds - summaryStartTimeInSeconds > 90 * 86_400:
            return JSONResponse({"errorMessage": "range over 90 days"}, 400)
        asked = (user, kind, summaryStartTimeInSeconds, summaryEndTimeInSeconds)
        if asked in vendor.backfills:
            return JSONResponse({"errorMessage": "duplicate backfill"}, 409)
        vendor.backfills.append(asked)
        return JSONResponse(None, 202)

    @app.get("/wellness-api/rest/{kind}")
    async def pull(kind: str, request: Request, token: str = "") -> JSONResponse:
        user = vendor.user_of(request)
        served = vendor.uploads.get(token)
        if served is None or served[0] != user or PATHS[served[1]] != kind:
            return JSONResponse({"errorMessage": "invalid pull token"}, 400)
        vendor.pulls.append((user, served[1]))
        return JSONResponse(served[2])

    return app


def days_back(n: int, today: date | None = None) -> list[date]:
    """The ``n`` days before today (oldest first)."""
    last = today or datetime.now(UTC).date()
    return [last - timedelta(days=i) for i in range(n, 0, -1)]


__all__ = [
    "OFFSET_S",
    "Garmin",
    "body_comp",
    "daily",
    "days_back",
    "garmin_app",
    "heart_rate",
    "permissions_change",
    "pulse_ox",
    "push",
    "respiration",
    "sleep",
]
