"""A stand-in of the Google Health API (v4) and of Google's OAuth endpoints: the consent
page (PKCE S256 required; a refresh token only with ``access_type=offline``), the token
endpoint (client credentials in the body; a refresh keeps the refresh token, Google's
way, unless ``rotate_refresh``), revocation, the user's identity and data points per
data type filtered on a time range (AIP-160, as Google documents it) and paged with
``pageSize``/``pageToken``. Faults are scripted as for every stand-in (429 with
Retry-After, 500, a revoked grant). Data the user deleted (``delete``) is no longer
served; ``notification`` builds the deliveries Google sends to a subscriber, and
``signed`` signs one as Google's webhooks service does: a Tink ECDSA P-256 signature of
the body, base64, in ``GOOGLE-HEALTH-API-SIGNATURE``, checked against the public keyset
served at ``KEYSET_PATH`` (``rotate`` puts a new signing key in front, as Google's
30-day rotation does)."""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import tink
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from tink import json_proto_keyset_format, signature

from standins.vendor import Grant, Vendor, _challenge, oauth_app

#: The user's offset from UTC (Google sends it as a protobuf Duration).
OFFSET = timedelta(hours=1)
MAX_PAGE = 10000
SESSION_MAX_PAGE = 25
_TERM = re.compile(r'^\s*(\w+)\.([\w.]+)\s*(>=|<)\s*"([^"]+)"\s*$')
#: What kind of record each data type is, so the filter must name it that way.
RECORDS = {"heart-rate": "sample", "oxygen-saturation": "sample", "weight": "sample",
           "steps": "interval", "distance": "interval", "sleep": "session",
           "daily-resting-heart-rate": "daily", "daily-respiratory-rate": "daily"}  # fmt: skip
KEYSET_PATH = "/googlehealthapi/webhooks/webhooks_public_keyset.json"
SIGNATURE_HEADER = "google-health-api-signature"
_FILTER_ON = {"sample": "sample_time.physical_time", "interval": "interval.start_time",
              "session": "interval.start_time", "daily": "date"}  # fmt: skip


@dataclass
class GoogleHealth(Vendor):
    rotate_refresh: bool = False
    #: The most data points a page holds (Google's cap; a test may lower it).
    max_page: int = MAX_PAGE
    #: The ``access_type`` and ``prompt`` each consent was asked with.
    consents: list[dict[str, str]] = field(default_factory=list)
    #: Data the user deleted: (data type, start, end); not served any more.
    deleted: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    #: The webhooks service's signing keys (Tink, ECDSA P-256); the public half is served.
    signing: tink.KeysetHandle = field(default_factory=lambda: _new_signing_key())
    #: Keys no longer used to sign, still published (a rotation's old key).
    retired: list[tink.KeysetHandle] = field(default_factory=list)
    keyset_fetches: int = 0

    def delete(self, data_type: str, start: datetime, end: datetime) -> None:
        self.deleted.append((data_type, start, end))

    def signed(self, delivery: Any) -> tuple[bytes, dict[str, str]]:
        """The body of ``delivery`` (JSON) and its signature header, as Google sends them."""
        body = json.dumps(delivery, separators=(",", ":")).encode()
        sign = self.signing.primitive(signature.PublicKeySign)
        return body, {SIGNATURE_HEADER: base64.b64encode(sign.sign(body)).decode()}

    def rotate(self, keep_old: bool = True) -> None:
        """Sign with a new key from now on; the old one stays published if ``keep_old``."""
        if keep_old:
            self.retired.append(self.signing)
        self.signing = _new_signing_key()

    def public_keyset(self) -> str:
        """The published keyset: every key's public half, the signing key primary."""
        keys, primary = [], None
        for handle in (self.signing, *self.retired):
            published = json.loads(
                json_proto_keyset_format.serialize_without_secret(handle.public_keyset_handle())
            )
            primary = primary or published["primaryKeyId"]
            keys.extend(published["key"])
        return json.dumps({"primaryKeyId": primary, "key": keys})


def _new_signing_key() -> tink.KeysetHandle:
    signature.register()
    return tink.new_keyset_handle(signature.signature_key_templates.ECDSA_P256)


def notification(user: str, operation: str, data_type: str, start: datetime,
                 end: datetime) -> list[dict[str, Any]]:  # fmt: skip
    """A delivery as Google sends it: a JSON array of notifications (one here)."""
    interval = {"physicalTimeInterval": {"startTime": _stamp(start), "endTime": _stamp(end)}}
    return [{"data": {"version": "1", "clientProvidedSubscriptionName": "fieldwatch",
                      "healthUserId": user, "operation": operation, "dataType": data_type,
                      "intervals": [interval]}}]  # fmt: skip


def _point_time(point: dict[str, Any]) -> datetime | None:
    inner = next((v for k, v in point.items() if k != "name"), None)
    if not isinstance(inner, dict):
        return None
    if "sampleTime" in inner:
        return datetime.fromisoformat(inner["sampleTime"]["physicalTime"].replace("Z", "+00:00"))
    if "interval" in inner:
        return datetime.fromisoformat(inner["interval"]["startTime"].replace("Z", "+00:00"))
    return None


def heart_rate(user: str, ts: datetime) -> int:
    minute = int(ts.timestamp() // 60)
    return 58 + (minute + len(user)) % 37


def weight_g(day: date) -> int:
    return 70000 + (day.toordinal() % 5) * 100


def steps(ts: datetime) -> int:
    return (int(ts.timestamp() // 900) * 7) % 300


def _stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())}s"


def _civil(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def _range(data_type: str, text: str | None) -> tuple[Any, Any]:
    """The filter's [low, high) range; a filter on another type or field is refused."""
    record = RECORDS[data_type]
    low = high = None
    for term in (text or "").split(" AND "):
        match = _TERM.match(term)
        if match is None:
            raise HTTPException(400, f"INVALID_ARGUMENT: bad filter term {term!r}")
        name, on, op, literal = match.groups()
        if name != data_type.replace("-", "_") or on != _FILTER_ON[record]:
            raise HTTPException(400, f"INVALID_ARGUMENT: {name}.{on} cannot filter {data_type}")
        value: Any = date.fromisoformat(literal) if record == "daily" else \
            datetime.fromisoformat(literal.replace("Z", "+00:00"))  # fmt: skip
        low, high = (value, high) if op == ">=" else (low, value)
    if low is None or high is None:
        raise HTTPException(400, "INVALID_ARGUMENT: a time range is required")
    return low, high


def _sample_points(user: str, kind: str, low: datetime, high: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if kind == "heart-rate":
        ts = low.replace(second=0, microsecond=0)
        ts += timedelta(minutes=1) if ts < low else timedelta()
        while ts < high:
            out.append({"heartRate": {"beatsPerMinute": str(heart_rate(user, ts)),
                        "sampleTime": {"physicalTime": _stamp(ts),
                                       "utcOffset": _duration(OFFSET)}}})  # fmt: skip
            ts += timedelta(minutes=1)
        return out
    day = low.date() - timedelta(days=1)
    while day <= high.date():
        n = day.toordinal()
        if kind == "weight":
            ts, name = datetime.combine(day, time(6), UTC), f"w{n}"
            data = {"weight": {"weightGrams": weight_g(day)}}
        else:
            ts, name = datetime.combine(day, time(5), UTC), f"o{n}"
            data = {"oxygenSaturation": {"percentage": 96 + n % 3}}
        if low <= ts < high:
            inner = next(iter(data.values()))
            inner["sampleTime"] = {"physicalTime": _stamp(ts), "utcOffset": _duration(OFFSET)}
            out.append({"name": f"users/{user}/dataTypes/{kind}/dataPoints/{name}", **data})
        day += timedelta(days=1)
    return out


def _interval_points(user: str, kind: str, low: datetime, high: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if kind == "sleep":
        day = low.date() - timedelta(days=1)
        while day <= high.date():
            start = datetime.combine(day, time(22), UTC)
            if low <= start < high:
                end = start + timedelta(hours=7, minutes=30)
                n = day.toordinal()
                interval = {
                    "startTime": _stamp(start),
                    "startUtcOffset": _duration(OFFSET),
                    "endTime": _stamp(end),
                    "endUtcOffset": _duration(OFFSET),
                }
                out.append({"name": f"users/{user}/dataTypes/sleep/dataPoints/s{n}",
                            "sleep": {"interval": interval,
                                      "summary": {"minutesAsleep": 420 + n % 30}}})  # fmt: skip
            day += timedelta(days=1)
        return out
    ts = datetime.fromtimestamp(-(-low.timestamp() // 900) * 900, UTC)
    while ts < high:
        count = steps(ts)
        value = {"count": str(count)} if kind == "steps" else {"millimeters": count * 700}
        interval = {"startTime": _stamp(ts), "startUtcOffset": _duration(OFFSET),
                    "endTime": _stamp(ts + timedelta(minutes=15)),
                    "endUtcOffset": _duration(OFFSET)}  # fmt: skip
        out.append({kind: {"interval": interval, **value}})
        ts += timedelta(minutes=15)
    return out


def _daily_points(kind: str, low: date, high: date) -> list[dict[str, Any]]:
    out = []
    day = low
    while day < high:
        if kind == "daily-resting-heart-rate":
            data = {
                "dailyRestingHeartRate": {
                    "date": _civil(day),
                    "beatsPerMinute": 58 + day.toordinal() % 4,
                }
            }
        else:
            data = {"dailyRespiratoryRate": {"date": _civil(day), "breathsPerMinute": 14.5}}
        out.append(data)
        day += timedelta(days=1)
    return out


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str | None) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token))["o"]) if token else 0
    except (ValueError, KeyError):
        raise HTTPException(400, "INVALID_ARGUMENT: bad pageToken") from None


def google_health_app(vendor: GoogleHealth) -> FastAPI:
    app = oauth_app(vendor, authorize="/unused/authorize", token="/unused/token")

    @app.get("/o/oauth2/v2/auth")
    async def authorize(request: Request) -> RedirectResponse:
        q = request.query_params
        if q.get("client_id") != vendor.client_id or q.get("response_type") != "code":
            raise HTTPException(400, "bad client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise HTTPException(400, "PKCE S256 required")
        vendor.consents.append({k: q.get(k, "") for k in ("access_type", "prompt", "scope")})
        code = secrets.token_urlsafe(16)
        vendor.codes[code] = {"user": q.get("login_hint") or vendor.users[0],
                              "redirect_uri": q["redirect_uri"], "challenge": q["code_challenge"],
                              "scope": q.get("scope", ""),
                              "offline": q.get("access_type") == "offline"}  # fmt: skip
        query = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", 302)

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        vendor.token_calls.append(form)
        if (form.get("client_id"), form.get("client_secret")) != (
            vendor.client_id, vendor.client_secret):  # fmt: skip
            return JSONResponse({"error": "invalid_client"}, 401)
        if form.get("grant_type") == "authorization_code":
            entry = vendor.codes.pop(form.get("code", ""), None)
            if entry is None or entry["redirect_uri"] != form.get("redirect_uri") \
                    or _challenge(form.get("code_verifier", "")) != entry["challenge"]:  # fmt: skip
                return JSONResponse({"error": "invalid_grant", "error_description": "Bad Request"},
                                    400)  # fmt: skip
            body = vendor.issue(Grant(entry["user"], entry["scope"]))
            if not entry["offline"]:
                vendor.refresh.pop(body.pop("refresh_token"), None)
            return JSONResponse(body)
        if form.get("grant_type") == "refresh_token":
            old = form.get("refresh_token", "")
            grant = vendor.refresh.get(old)
            if grant is None or grant.revoked:
                return JSONResponse({"error": "invalid_grant",
                                     "error_description": "Token has been expired or revoked."},
                                    400)  # fmt: skip
            vendor.grants.pop(grant.access_token, None)
            body = vendor.issue(grant)
            if not vendor.rotate_refresh:  # Google keeps the refresh token
                vendor.refresh.pop(body.pop("refresh_token"), None)
                grant.refresh_token = old
            else:
                vendor.refresh.pop(old, None)
            return JSONResponse(body)
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    @app.post("/revoke")
    async def revoke(request: Request) -> JSONResponse:
        token = str((await request.form()).get("token") or "")
        grant = vendor.grants.get(token) or vendor.refresh.get(token)
        if grant is None:
            return JSONResponse({"error": "invalid_token"}, 400)
        grant.revoked = True
        vendor.revocations.append(grant.user_id)
        return JSONResponse({})

    @app.get(KEYSET_PATH)
    async def keyset() -> Response:
        vendor.keyset_fetches += 1
        return Response(vendor.public_keyset(), media_type="application/json")

    @app.get("/v4/users/me/identity")
    async def identity(request: Request) -> dict[str, Any]:
        user = vendor.user_of(request)
        return {"name": "users/me/identity", "healthUserId": user, "legacyUserId": "7ABC12"}

    @app.get("/v4/users/me/dataTypes/{data_type}/dataPoints")
    async def data_points(
        request: Request, data_type: str, filter: str | None = None,
        pageSize: int = 1440, pageToken: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        user = vendor.user_of(request)
        if data_type not in RECORDS:
            raise HTTPException(404, f"NOT_FOUND: data type {data_type}")
        low, high = _range(data_type, filter)
        record = RECORDS[data_type]
        if record == "daily":
            points = _daily_points(data_type, low, high)
        elif record == "sample":
            points = _sample_points(user, data_type, low, high)
        else:
            points = _interval_points(user, data_type, low, high)
        gone = [(a, b) for kind, a, b in vendor.deleted if kind == data_type]
        points = [p for p in points
                  if not any(a <= (_point_time(p) or b) < b for a, b in gone)]  # fmt: skip
        cap = SESSION_MAX_PAGE if record == "session" else vendor.max_page
        size = max(1, min(pageSize, cap, vendor.max_page))
        offset = _offset(pageToken)
        page = points[offset : offset + size]
        more = offset + len(page) < len(points)
        return {"dataPoints": page, "nextPageToken": _token(offset + len(page)) if more else ""}

    return app


__all__ = [
    "KEYSET_PATH",
    "OFFSET",
    "SIGNATURE_HEADER",
    "GoogleHealth",
    "google_health_app",
    "heart_rate",
    "notification",
    "steps",
    "weight_g",
]
