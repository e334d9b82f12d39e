"""HTTP: the callback endpoints Garmin calls (set them in Garmin's endpoint
configuration). No login: Garmin names its user in the body; the answer comes quickly
(a ping's pull runs after it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Header

from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import ServiceUnavailable
from fieldwatch.integrations.dependencies import SyncEngineDep
from fieldwatch.integrations.garmin.service import GarminCallbacks
from fieldwatch.integrations.sync.pushed import PushedRuns

#: Included in the integrations router (``/api/v1/integrations/garmin/…``).
router = APIRouter(prefix="/garmin", tags=["integrations"])

Payload = Annotated[dict[str, Any], Body()]
ClientId = Annotated[str | None, Header(alias="garmin-client-id", max_length=200)]


async def get_callbacks(engine: SyncEngineDep, settings: SettingsDep) -> GarminCallbacks:
    runs = PushedRuns(engine.uow, settings, engine.runner.ingest, owner=engine.owner,
                      clock=engine.clock)  # fmt: skip
    return GarminCallbacks(engine.uow, settings, engine.tokens, runs, engine.clock)


Callbacks = Annotated[GarminCallbacks, Depends(get_callbacks)]


@router.post("/push")
async def push(body: Payload, callbacks: Callbacks, client_id: ClientId = None) -> dict[str, str]:
    """Summaries Garmin pushes (`dailies`, `sleeps`, `pulseox`, `allDayRespiration`,
    `bodyComps`), stored as `webhook` sync runs of the devices imported from the user's
    connections; repeats and unknown users are answered 200 and change nothing. 503
    when some of it could not be stored (Garmin sends it again)."""
    callbacks.check_sender(client_id)
    if not await callbacks.push(body):
        raise ServiceUnavailable("Part of the push could not be stored; send it again.",
                                 headers={"Retry-After": "60"})  # fmt: skip
    return {"status": "accepted"}


@router.post("/ping")
async def ping(
    body: Payload, callbacks: Callbacks, tasks: BackgroundTasks, client_id: ClientId = None
) -> dict[str, str]:
    """Garmin has summaries for us at `callbackURL`: answered at once, pulled after
    (only from the configured Garmin API host: another host is refused, 400)."""
    callbacks.check_sender(client_id)
    pings = callbacks.pings(body)
    if pings:
        tasks.add_task(callbacks.pull, pings)
    return {"status": "accepted"}


@router.post("/deregistration")
async def deregistration(
    body: Payload, callbacks: Callbacks, client_id: ClientId = None
) -> dict[str, str]:
    """Users who ended their grant at Garmin: their connections become `revoked`."""
    callbacks.check_sender(client_id)
    await callbacks.deregister(body)
    return {"status": "accepted"}


@router.post("/permissions")
async def permissions(
    body: Payload, callbacks: Callbacks, client_id: ClientId = None
) -> dict[str, str]:
    """Garmin's `userPermissionsChange`: the permissions the user's grant has now. Data
    types they no longer allow leave the connection's consent (nothing of them is stored
    or pulled any more)."""
    callbacks.check_sender(client_id)
    await callbacks.permissions(body)
    return {"status": "accepted"}
