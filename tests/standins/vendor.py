"""What every stand-in vendor has: an OAuth 2 authorization server (authorization code
with PKCE S256, refresh tokens that rotate), bearer-token checks, request budgets and
scripted faults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse


@dataclass
class Grant:
    user_id: str
    scope: str
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0
    revoked: bool = False


@dataclass
class Fault:
    """The next ``times`` requests under ``path`` (after ``after`` of them went through:
    a page that fails mid-sync) get this answer (or a delay)."""

    path: str
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    delay_s: float = 0.0
    body: dict[str, Any] | None = None
    after: int = 0


@dataclass
class Vendor:
    """The vendor's state: clients, codes, grants, faults and what it was asked."""

    client_id: str = "standin-client"
    client_secret: str = "standin-secret"
    access_ttl_s: int = 3600
    #: Refresh tokens are single-use (a used one answers invalid_grant).
    rotate_refresh: bool = True
    #: A budget per access token: requests per window (None: unlimited).
    rate_limit: tuple[int, float] | None = None
    users: list[str] = field(default_factory=lambda: ["user-1"])
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)  # by access token
    refresh: dict[str, Grant] = field(default_factory=dict)  # by refresh token
    faults: deque[Fault] = field(default_factory=deque)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (path, query)
    token_calls: list[dict[str, str]] = field(default_factory=list)
    #: Users whose grant was revoked through the revoke endpoint.
    revocations: list[str] = field(default_factory=list)
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    def fail(self, path: str, status: int = 500, times: int = 1, **kw: Any) -> None:
        self.faults.append(Fault(path, status, times, **kw))

    def revoke(self, user_id: str) -> None:
        for grant in {id(g): g for g in self.grants.values()}.values():
            if grant.user_id == user_id:
                grant.revoked = True

    def issue(self, grant: Grant) -> dict[str, Any]:
        grant.access_token = secrets.token_urlsafe(24)
        grant.refresh_token = secrets.token_urlsafe(24)
        grant.expires_at = time.time() + self.access_ttl_s
        self.grants[grant.access_token] = grant
        self.refresh[grant.refresh_token] = grant
        return {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": self.access_ttl_s,
            "token_type": "Bearer",
            "scope": grant.scope,
        }

    def user_of(self, request: Request) -> str:
        """The user a data request is for: a valid, unexpired, unrevoked bearer token."""
        auth = request.headers.get("authorization", "")
        grant = self.grants.get(auth.removeprefix("Bearer ").strip())
        if grant is None or grant.revoked or grant.expires_at < time.time():
            raise HTTPException(401, "invalid or expired token")
        if self.rate_limit is not None:
            limit, window = self.rate_limit
            hits = self._hits.setdefault(grant.access_token, deque())
            now = time.monotonic()
            while hits and hits[0] < now - window:
                hits.popleft()
            if len(hits) >= limit:
                raise HTTPException(429, "rate limited", {"Retry-After": str(int(window))})
            hits.append(now)
        return grant.user_id


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def oauth_app(vendor: Vendor, *, authorize: str, token: str) -> FastAPI:
    """A FastAPI app with the vendor's authorize and token endpoints and the faults."""
    app = FastAPI()

    @app.middleware("http")
    async def faults(request: Request, call_next: Any) -> Any:
        vendor.calls.append((request.url.path, request.url.query))
        for fault in list(vendor.faults):
            if request.url.path.startswith(fault.path):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    vendor.faults.remove(fault)
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                    break
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                body = fault.body or {"error": f"scripted fault {fault.status}"}
                return JSONResponse(body, fault.status, headers=headers)
        return await call_next(request)

    @app.get(authorize)
    async def authorize_(request: Request) -> RedirectResponse:
        q = request.query_params
        if q.get("client_id") != vendor.client_id or q.get("response_type") != "code":
            raise HTTPException(400, "bad client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise HTTPException(400, "PKCE S256 required")
        code = secrets.token_urlsafe(16)
        vendor.codes[code] = {
            "user": q.get("login_hint") or vendor.users[0],
            "redirect_uri": q["redirect_uri"],
            "challenge": q["code_challenge"],
            "scope": q.get("scope", ""),
        }
        query = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", 302)

    @app.post(token)
    async def token_(
        grant_type: str = Form(),
        code: str | None = Form(None),
        redirect_uri: str | None = Form(None),
        code_verifier: str | None = Form(None),
        refresh_token: str | None = Form(None),
        client_id: str | None = Form(None),
        client_secret: str | None = Form(None),
        request: Request = None,  # type: ignore[assignment]
    ) -> JSONResponse:
        form = dict(await request.form())
        vendor.token_calls.append({k: str(v) for k, v in form.items()})
        cid, secret = client_id, client_secret
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if (cid, secret) != (vendor.client_id, vendor.client_secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        if grant_type == "authorization_code":
            entry = vendor.codes.pop(code or "", None)
            if entry is None or entry["redirect_uri"] != redirect_uri:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if _challenge(code_verifier or "") != entry["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            return JSONResponse(vendor.issue(Grant(entry["user"], entry["scope"])))
        if grant_type == "refresh_token":
            grant = vendor.refresh.get(refresh_token or "")
            if grant is None or grant.revoked:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if vendor.rotate_refresh:
                del vendor.refresh[refresh_token or ""]
            vendor.grants.pop(grant.access_token, None)
            return JSONResponse(vendor.issue(grant))
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    return app
