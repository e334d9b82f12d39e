"""What the console's integrations tests share: the Oura stand-in served for a test (the
``oura`` fixture: a test module imports it), signing in to the integrations pages, an
account connected and its ring synced for real (Fieldwatch's OAuth endpoints, the
import API, the sync engine's run), and a failed run to retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from conftest import Actor
from console_helpers import csrf_of, sign_in_http
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.models import SyncRun
from fieldwatch.runtime import Runtime
from integration_helpers import connect_as, import_ring, oura_standin
from standins.vendor import Vendor
from sync_helpers import runs

USER = "oura-console-1"
HR = "/v2/usercollection/heartrate"
BASE = "/console/integrations"


@pytest.fixture
async def oura(settings: Settings) -> AsyncIterator[Vendor]:
    """The Oura stand-in, with the account of ``USER``."""
    async with oura_standin(settings, users=[USER]) as vendor:
        yield vendor


async def console_as(client: httpx.AsyncClient, actor: Actor) -> str:
    """Sign ``client`` in as ``actor``; the session's CSRF token."""
    signed = await sign_in_http(client, actor.email)
    assert signed.status_code == 303, signed.text
    page = await client.get(BASE)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@dataclass
class Synced:
    connection_id: str
    device_id: str
    run: SyncRun  # the first sync: a backfill of a day, completed


async def synced_ring(client: httpx.AsyncClient, actor: Actor, runtime: Runtime) -> Synced:
    """The stand-in's account connected, its ring imported and backfilled (one day)."""
    connection = await connect_as(client, actor, USER)
    device = await import_ring(client, actor, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed" and run.records_synced > 1000, run
    return Synced(connection, device, run)


async def failed_run(
    client: httpx.AsyncClient, actor: Actor, runtime: Runtime, vendor: Vendor, device: str
) -> SyncRun:
    """A manual run that the vendor's 503 failed, with no automatic retry."""
    runtime.settings.max_sync_retries = 0
    vendor.fail(HR, 503)
    asked = await client.post(f"/api/v1/devices/{device}/sync", headers=actor.headers)
    assert asked.status_code == 202, asked.text
    await runtime.sync.run_once()
    last = (await runs(runtime, device))[-1]
    assert (last.status, last.error_message) == ("failed", "the vendor answered HTTP 503")
    return last
