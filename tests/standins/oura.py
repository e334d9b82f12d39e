"""A stand-in of the Oura API v2: OAuth (authorize, token with single-use refresh
tokens), personal info, heart rate by datetime range and daily collections by date
range, paged with ``next_token``."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from standins.vendor import Vendor, oauth_app

PAGE = 500  # heart-rate samples per page

#: Where the ring's wearer is: its daily totals are stamped in this zone.
RING_ZONE = timezone(timedelta(hours=2))


def heart_rate(user: str, ts: datetime) -> int:
    """The stand-in's deterministic heart rate of a user at a minute."""
    minute = int(ts.timestamp() // 60)
    return 55 + (minute + len(user)) % 40


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token))["o"])
    except (ValueError, KeyError):
        raise HTTPException(400, "bad next_token") from None


def _when(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def oura_app(vendor: Vendor, *, now: datetime | None = None) -> FastAPI:
    app = oauth_app(vendor, authorize="/oauth/authorize", token="/oauth/token")

    @app.post("/oauth/revoke")
    async def revoke(request: Request) -> JSONResponse:
        """RFC 7009: the grant of the token (access or refresh) ends; unknown tokens are
        answered 200 too."""
        basic = request.headers.get("authorization", "")
        cid, _, secret = base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
        if (cid, secret) != (vendor.client_id, vendor.client_secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        token = str((await request.form()).get("token") or "")
        grant = vendor.grants.get(token) or vendor.refresh.get(token)
        if grant is not None:
            grant.revoked = True
            vendor.revocations.append(grant.user_id)
        return JSONResponse({})

    @app.get("/v2/usercollection/personal_info")
    async def personal_info(request: Request) -> dict[str, Any]:
        user = vendor.user_of(request)
        return {"id": user, "age": 40, "email": f"{user}@example.com"}

    @app.get("/v2/usercollection/ring_configuration")
    async def ring_configuration(request: Request) -> dict[str, Any]:
        user = vendor.user_of(request)
        ring = {"id": f"ring-{user}", "color": "stealth_black", "design": "heritage",
                "firmware_version": "2.9.1", "hardware_type": "gen3", "size": 9,
                "set_up_at": "2026-01-05T10:00:00+00:00"}  # fmt: skip
        return {"data": [ring], "next_token": None}

    @app.get("/v2/usercollection/heartrate")
    async def heartrate(
        request: Request,
        start_datetime: str | None = None,
        end_datetime: str | None = None,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        user = vendor.user_of(request)
        end = _when(end_datetime, now or datetime.now(UTC))
        start = _when(start_datetime, end - timedelta(days=1))
        first = start.replace(second=0, microsecond=0)
        if first < start:
            first += timedelta(minutes=1)
        total = max(0, int((end - first).total_seconds() // 60) + 1)
        offset = _offset(next_token)
        count = min(PAGE, total - offset)
        data = []
        for i in range(offset, offset + max(count, 0)):
            ts = first + timedelta(minutes=i)
            data.append({"bpm": heart_rate(user, ts), "source": "awake",
                         "timestamp": ts.isoformat().replace("+00:00", "+00:00")})  # fmt: skip
        more = offset + count < total
        return {"data": data, "next_token": _token(offset + count) if more else None}

    @app.get("/v2/usercollection/daily_activity")
    async def daily_activity(
        request: Request,
        start_date: date | None = None,
        end_date: date | None = None,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        user = vendor.user_of(request)
        last = end_date or (now or datetime.now(UTC)).date()
        first = start_date or last - timedelta(days=7)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        offset = _offset(next_token)
        page = days[offset : offset + 10]
        data = [{"id": f"{user}-{d.isoformat()}", "day": d.isoformat(),
                 "steps": 4000 + (d.toordinal() * 37) % 9000,
                 "timestamp": f"{d.isoformat()}T04:00:00+02:00"} for d in page]  # fmt: skip
        more = offset + len(page) < len(days)
        return {"data": data, "next_token": _token(offset + len(page)) if more else None}

    return app
