"""Connecting a stand-in vendor's account through Fieldwatch's real OAuth endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlparse

import httpx

from conftest import Actor
from fieldwatch.core.settings import Settings, VendorApp
from standins.oura import oura_app
from standins.server import serve
from standins.vendor import Vendor

API = "/api/v1/integrations"


@contextlib.asynccontextmanager
async def oura_standin(settings: Settings, **kw: object) -> AsyncIterator[Vendor]:
    """The Oura stand-in, served, and Fieldwatch configured to use it."""
    vendor = Vendor(**kw)  # type: ignore[arg-type]
    async with serve(oura_app(vendor)) as base:
        settings.oura = VendorApp(client_id=vendor.client_id, client_secret=vendor.client_secret,
                                  auth_url=base, api_url=base)  # fmt: skip
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
