"""A stand-in of the Oura API v2: OAuth (authorize, token with single-use refresh
tokens), personal info, heart rate by datetime range and daily collections by date
range, paged with ``next_token``; webhook subscriptions (the app's, with its client id
and secret: create after the callback echoed the challenge, list, renew, delete) and
signed notifications sent to them (``Oura.notify``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from standins.vendor import Vendor, oauth_app

PAGE = 500  # heart-rate samples per page

#: Where the ring's wearer is: its daily totals are stamped in this zone.
RING_ZONE = timezone(timedelta(hours=2))


@dataclass
class Oura(Vendor):
    #: How Oura reaches the subscribers' callbacks (a client of the app under test).
    callback: httpx.AsyncClient | None = None
    subscription_ttl: timedelta = timedelta(days=10)
    #: Subscriptions by id: callback_url, event_type, data_type, expiration_time.
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Daily-activity records deleted by their user (no longer answered).
    deleted: set[str] = field(default_factory=set)

    def signed(self, body: bytes, secret: str | None = None,
               at: float | None = None) -> dict[str, str]:  # fmt: skip
        stamp = str(int(at if at is not None else time.time()))
        key = (secret or self.client_secret).encode()
        mac = hmac.new(key, stamp.encode() + body, hashlib.sha256).hexdigest().upper()
        return {"x-oura-signature": mac, "x-oura-timestamp": stamp,
                "content-type": "application/json"}  # fmt: skip

    async def notify(self, event_type: str, data_type: str, user_id: str, object_id: str,
                     *, secret: str | None = None) -> list[httpx.Response]:  # fmt: skip
        """Send a notification to every subscription of this event and data type."""
        assert self.callback is not None
        body = json.dumps({"event_type": event_type, "data_type": data_type,
                           "object_id": object_id, "user_id": user_id,
                           "event_time": datetime.now(UTC).isoformat()}).encode()  # fmt: skip
        out = []
        for sub in list(self.subscriptions.values()):
            if (sub["event_type"], sub["data_type"]) == (event_type, data_type):
                out.append(await self.callback.post(sub["callback_url"], content=body,
                                                    headers=self.signed(body, secret)))  # fmt: skip
        return out


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
                 "timestamp": f"{d.isoformat()}T04:00:00+02:00"} for d in page
                if f"{user}-{d.isoformat()}" not in getattr(vendor, "deleted", ())]  # fmt: skip
        more = offset + len(page) < len(days)
        return {"data": data, "next_token": _token(offset + len(page)) if more else None}

    if isinstance(vendor, Oura):
        _webhooks(app, vendor)
    return app


def _webhooks(app: FastAPI, vendor: Oura) -> None:
    def app_client(request: Request) -> None:
        sent = (request.headers.get("x-client-id"), request.headers.get("x-client-secret"))
        if sent != (vendor.client_id, vendor.client_secret):
            raise HTTPException(401, "invalid client")

    def model(sub_id: str) -> dict[str, Any]:
        sub = vendor.subscriptions[sub_id]
        return {"id": sub_id, **{k: v for k, v in sub.items() if k != "verification_token"}}

    @app.get("/v2/webhook/subscription")
    async def list_subscriptions(request: Request) -> list[dict[str, Any]]:
        app_client(request)
        return [model(i) for i in vendor.subscriptions]

    @app.post("/v2/webhook/subscription", status_code=201)
    async def create_subscription(request: Request) -> dict[str, Any]:
        app_client(request)
        body = await request.json()
        challenge = secrets.token_urlsafe(12)
        assert vendor.callback is not None
        check = await vendor.callback.get(
            body["callback_url"],
            params={"verification_token": body["verification_token"], "challenge": challenge},
        )
        if check.status_code != 200 or check.json().get("challenge") != challenge:
            raise HTTPException(422, "the callback did not answer the challenge")
        sub_id = secrets.token_hex(8)
        vendor.subscriptions[sub_id] = {
            "callback_url": body["callback_url"], "event_type": body["event_type"],
            "data_type": body["data_type"], "verification_token": body["verification_token"],
            "expiration_time": (datetime.now(UTC) + vendor.subscription_ttl).isoformat(),
        }  # fmt: skip
        return model(sub_id)

    @app.put("/v2/webhook/subscription/renew/{sub_id}")
    async def renew_subscription(sub_id: str, request: Request) -> dict[str, Any]:
        app_client(request)
        if sub_id not in vendor.subscriptions:
            raise HTTPException(404, "no such subscription")
        expires = datetime.now(UTC) + vendor.subscription_ttl
        vendor.subscriptions[sub_id]["expiration_time"] = expires.isoformat()
        return model(sub_id)

    @app.delete("/v2/webhook/subscription/{sub_id}", status_code=204)
    async def delete_subscription(sub_id: str, request: Request) -> Response:
        app_client(request)
        if vendor.subscriptions.pop(sub_id, None) is None:
            raise HTTPException(404, "no such subscription")
        return Response(status_code=204)
