"""Oura API v2 webhooks, the vendor's side.

Subscriptions belong to the app (its client id and secret in ``x-client-id`` /
``x-client-secret``), one per event type (``create``, ``update``, ``delete``) and data
type, at ``/v2/webhook/subscription``: create (Oura first calls the callback with the
``verification_token`` given and a ``challenge`` to echo), list, renew
(``/renew/{id}``: a new ``expiration_time``) and delete. A notification is a POST of
``{event_type, data_type, object_id, event_time, user_id}`` signed in
``x-oura-signature``: the hex HMAC-SHA256, keyed with the client secret, of the
``x-oura-timestamp`` header followed by the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from fieldwatch.core.settings import VendorApp
from fieldwatch.integrations.connectors.base import VendorError, checked
from fieldwatch.integrations.connectors.oura import OuraConnector

SUBSCRIPTIONS = "/v2/webhook/subscription"
EVENT_TYPES = ("create", "update", "delete")
#: Oura's data types whose notifications concern a metric Fieldwatch syncs.
DATA_TYPES: dict[str, tuple[str, ...]] = {"daily_activity": ("steps",),
                                          "heartrate": ("heart_rate",)}  # fmt: skip
TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Subscribed:
    id: str
    callback_url: str
    event_type: str
    data_type: str
    expires_at: datetime | None


def topic(event_type: str, data_type: str) -> str:
    return f"{event_type}:{data_type}"


def topics() -> list[str]:
    return [topic(e, d) for d in DATA_TYPES for e in EVENT_TYPES]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return mac.hexdigest()


def verify(secret: str, timestamp: str | None, signed: str | None, body: bytes,
           max_age_s: float, now: float | None = None) -> str | None:  # fmt: skip
    """Why the notification is refused (None: it is Oura's, and fresh)."""
    if not secret:
        return "no client secret configured"
    if not timestamp or not signed:
        return "the signature headers are missing"
    try:
        sent = float(timestamp)
    except ValueError:
        return "the timestamp is not a number"
    if sent > 1e11:  # milliseconds
        sent /= 1000.0
    if abs((now if now is not None else time.time()) - sent) > max_age_s:
        return "the timestamp is too old or in the future"
    if not hmac.compare_digest(signature(secret, timestamp, body).lower(), signed.lower()):
        return "the signature does not match"
    return None


def _subscribed(item: dict[str, Any]) -> Subscribed:
    raw = item.get("expiration_time")
    expires = datetime.fromisoformat(str(raw)) if raw else None
    return Subscribed(str(item["id"]), str(item.get("callback_url") or ""),
                      str(item.get("event_type") or ""), str(item.get("data_type") or ""),
                      expires)  # fmt: skip


class OuraSubscriptions:
    """The app's subscriptions at Oura (``async with``: one HTTP client)."""

    def __init__(self, app: VendorApp) -> None:
        base = (app.api_url or OuraConnector.api_base).rstrip("/")
        headers = {"x-client-id": app.client_id or "", "x-client-secret": app.client_secret or ""}
        self.http = httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT_S)

    async def __aenter__(self) -> OuraSubscriptions:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def list(self) -> list[Subscribed]:
        answer = await self.http.get(SUBSCRIPTIONS)
        if answer.status_code >= 300:
            raise VendorError(answer.status_code)
        body = answer.json()
        items = body if isinstance(body, list) else body.get("data") or []
        return [_subscribed(item) for item in items if isinstance(item, dict)]

    async def create(self, callback_url: str, token: str, event_type: str,
                     data_type: str) -> Subscribed:  # fmt: skip
        body = {"callback_url": callback_url, "verification_token": token,
                "event_type": event_type, "data_type": data_type}  # fmt: skip
        return _subscribed(checked(await self.http.post(SUBSCRIPTIONS, json=body)))

    async def renew(self, subscription_id: str) -> Subscribed:
        return _subscribed(checked(await self.http.put(f"{SUBSCRIPTIONS}/renew/{subscription_id}")))

    async def delete(self, subscription_id: str) -> None:
        answer = await self.http.delete(f"{SUBSCRIPTIONS}/{subscription_id}")
        if answer.status_code >= 300 and answer.status_code != 404:
            raise VendorError(answer.status_code)
