"""Connecting a stand-in vendor's account through Fieldwatch's real OAuth endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, tzinfo
from urllib.parse import parse_qs, urlparse

import httpx

from conftest import Actor
from fieldwatch.core.settings import Settings, VendorApp
from standins.garmin import Garmin, garmin_app
from standins.google_health import KEYSET_PATH, GoogleHealth, google_health_app
from standins.oura import Oura, oura_app
from standins.server import serve
from standins.vendor import Vendor
from standins.withings import Withings, withings_app

API = "/api/v1/integrations"


@contextlib.asynccontextmanager
async def oura_standin(settings: Settings, **kw: object) -> AsyncIterator[Oura]:
    """The Oura stand-in, served, and Fieldwatch configured to use it."""
    vendor = Oura(**kw)  # type: ignore[arg-type]
    async with serve(oura_app(vendor)) as base:
        settings.oura = VendorApp(client_id=vendor.client_id, client_secret=vendor.client_secret,
                                  auth_url=base, api_url=base)  # fmt: skip
        yield vendor


@contextlib.asynccontextmanager
async def withings_standin(settings: Settings, **kw: object) -> AsyncIterator[Withings]:
    """The Withings stand-in, served, and Fieldwatch configured to use it."""
    vendor = Withings(**kw)  # type: ignore[arg-type]
    async with serve(withings_app(vendor)) as base:
        settings.withings = VendorApp(client_id=vendor.client_id,
                                      client_secret=vendor.client_secret,
                                      auth_url=base, api_url=base)  # fmt: skip
        yield vendor


@contextlib.asynccontextmanager
async def garmin_standin(settings: Settings, **kw: object) -> AsyncIterator[Garmin]:
    """The Garmin stand-in, served, and Fieldwatch configured to use it."""
    vendor = Garmin(**kw)  # type: ignore[arg-type]
    async with serve(garmin_app(vendor)) as base:
        vendor.base_url = base
        settings.garmin = VendorApp(client_id=vendor.client_id, client_secret=vendor.client_secret,
                                    auth_url=base, api_url=base)  # fmt: skip
        yield vendor


@contextlib.asynccontextmanager
async def google_health_standin(settings: Settings, **kw: object) -> AsyncIterator[GoogleHealth]:
    """The Google Health stand-in (consent page, token and revocation endpoints and the
    API on one address), served, and Fieldwatch configured to use it."""
    vendor = GoogleHealth(**kw)  # type: ignore[arg-type]
    async with serve(google_health_app(vendor)) as base:
        settings.google_health = VendorApp(client_id=vendor.client_id,
                                           client_secret=vendor.client_secret,
                                           auth_url=base, api_url=base, token_url=base,
                                           webhook_keyset_url=f"{base}{KEYSET_PATH}")  # fmt: skip
        yield vendor


async def consent(url: str, kind: str = "oura") -> dict[str, str]:
    """What the account holder's browser does at the vendor: consent, get sent back."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(url)
    assert answer.status_code == 302, answer.text
    location = urlparse(answer.headers["location"])
    assert location.path == f"/api/v1/integrations/{kind}/callback"
    return {k: v[0] for k, v in parse_qs(location.query).items()}


async def connect(
    client: httpx.AsyncClient, actor: Actor, kind: str = "oura", **body: object
) -> httpx.Response:
    started = await client.post(f"{API}/{kind}/auth", json=body, headers=actor.headers)
    assert started.status_code == 200, started.text
    back = await consent(started.json()["authorization_url"], kind)
    return await client.get(f"{API}/{kind}/callback", params=back)


async def connect_as(client: httpx.AsyncClient, actor: Actor, user: str, kind: str = "oura") -> str:
    """Connect the stand-in's account ``user`` (the consent page's login hint); its
    connection id."""
    started = await client.post(f"{API}/{kind}/auth", json={}, headers=actor.headers)
    assert started.status_code == 200, started.text
    back = await consent(started.json()["authorization_url"] + f"&login_hint={user}", kind)
    answer = await client.get(f"{API}/{kind}/callback", params=back)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def import_ring(
    client: httpx.AsyncClient, actor: Actor, connection_id: str, **sync_settings: object
) -> str:
    """Import the account's ring; its Fieldwatch device id."""
    listed = await client.get(f"{API}/oura/devices", params={"connection_id": connection_id},
                              headers=actor.headers)  # fmt: skip
    assert listed.status_code == 200, listed.text
    ring = listed.json()["items"][0]["vendor_device_id"]
    return await import_device(client, actor, connection_id, ring, "oura", **sync_settings)


async def import_device(
    client: httpx.AsyncClient,
    actor: Actor,
    connection_id: str,
    vendor_device_id: str,
    kind: str = "oura",
    **sync_settings: object,
) -> str:
    """Import the account's device ``vendor_device_id``; its Fieldwatch device id."""
    body = {"connection_id": connection_id, "devices": [vendor_device_id],
            "sync_settings": sync_settings}  # fmt: skip
    answer = await client.post(f"{API}/{kind}/import", json=body, headers=actor.headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()[0]["device_id"])


def refreshes(vendor: Vendor) -> int:
    """How many times the stand-in was asked to refresh a grant."""
    return sum(1 for call in vendor.token_calls if call.get("grant_type") == "refresh_token")


def days_ahead(zone: tzinfo) -> int:
    """How many days the date in ``zone`` is ahead of UTC's right now (1 in the last
    hours of a UTC day east of Greenwich): a daily total of "the days that are over"
    has that many more there."""
    now = datetime.now(UTC)
    return (now.astimezone(zone).date() - now.date()).days
