"""Who may write telemetry: a device (its own data) or a user/API key with operator role."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from fieldwatch.auth.dependencies import AuthDep, Authenticator, authenticate_caller, bearer
from fieldwatch.auth.roles import Role
from fieldwatch.core import credentials as creds
from fieldwatch.core.components import SettingsDep, Slot
from fieldwatch.core.errors import BadRequest, PayloadTooLarge, TooManyRequests, Unauthorized
from fieldwatch.db.dependencies import UowDep
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService
from fieldwatch.monitoring.dependencies import LimitsDep
from fieldwatch.monitoring.limits import DeviceLimiter
from fieldwatch.telemetry.hub import TelemetryHub
from fieldwatch.telemetry.ingest.parse import read_body
from fieldwatch.telemetry.ingest.service import TelemetryService
from fieldwatch.telemetry.query.queries import TelemetryQueries

HUB: Slot[TelemetryHub] = Slot("telemetry_hub")
HubDep = Annotated[TelemetryHub, Depends(HUB)]
#: The process's one way in for readings (built once, by the runtime).
INGEST: Slot[TelemetryService] = Slot("telemetry_ingest")


@dataclass(frozen=True, slots=True)
class Writer:
    workspace_id: uuid.UUID
    device_id: uuid.UUID | None  # set when a device token is writing (its own data only)


async def get_writer(
    request: Request,
    hub: HubDep,
    auth: AuthDep,
    limits: LimitsDep,
    uow: UowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Writer:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Send 'Authorization: Bearer <device token, access token or API key>'.")
    token = credentials.credentials
    hint = request.headers.get("x-workspace")
    # Ingestion is the hot path: a credential checked in the last couple of seconds is
    # not looked up again (revocations and role changes clear this cache at once).
    cache_key = f"{hint or ''}|{token}"
    writer: Writer | None = hub.writers.get(cache_key)
    if writer is None:
        writer = await _resolve_writer(hub, auth, uow, token, hint)
        hub.writers.put(cache_key, writer)
    if writer.device_id is not None:
        await check_rate(limits, writer.workspace_id, writer.device_id)
    return writer


class RateLimited(TooManyRequests):
    slug, title = "rate-limited", "Over the device's rate limit"


async def check_rate(limits: DeviceLimiter, workspace_id: uuid.UUID, device_id: uuid.UUID) -> None:
    """A device's own uploads count against its rate limit (``monitoring.limits``):
    over it, 429 with ``Retry-After``; nothing of the request is read or stored."""
    refusal = await limits.check("http", workspace_id, device_id)
    if refusal is not None:
        retry = max(1, math.ceil(refusal.retry_after))
        raise RateLimited(
            f"{refusal.message} Retry after {retry} s.",
            headers={"Retry-After": str(retry)},
            limit={"messages": refusal.rate.messages, "window_s": refusal.rate.window_s},
            retry_after=retry,
        )


async def _resolve_writer(
    hub: TelemetryHub, auth: Authenticator, uow: UnitOfWork, token: str, hint: str | None
) -> Writer:
    if token.startswith(creds.DEVICE_TOKEN_PREFIX):
        device = await DeviceService(uow).authenticate_device(token)
        await uow.commit()
        writer = Writer(device.workspace_id, device.device_id)
        hub.remember_device(
            device.device_id, device.workspace_id, device.device.status, device.device.type
        )
    else:
        principal = await authenticate_caller(auth, uow, token, hint)
        principal.require(Role.operator)
        writer = Writer(principal.workspace_id, None)
    return writer


WriterDep = Annotated[Writer, Depends(get_writer)]


async def ingestion(
    ingest: Annotated[TelemetryService, Depends(INGEST)], uow: UowDep, writer: WriterDep
) -> TelemetryService:
    """The process's one way in for readings, once the writer is known. The request's
    connection goes back to the pool first: ingestion works in transactions of its own,
    and holding a pooled connection while waiting for another can exhaust the pool."""
    await uow.release()
    return ingest


IngestDep = Annotated[TelemetryService, Depends(ingestion)]


async def telemetry_queries(hub: HubDep, uow: UowDep) -> TelemetryQueries:
    return TelemetryQueries(uow, hub)


TelemetryDep = Annotated[TelemetryQueries, Depends(telemetry_queries)]


async def raw_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body, refused whole when larger than the ingest limit (413)."""
    limit = settings.ingest_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the {limit} byte limit.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the {limit} byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(raw: Annotated[bytes, Depends(raw_body)]) -> Any:
    """JSON, refused whole when malformed (400); an empty body is None."""
    try:
        return read_body(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


RawBody = Annotated[bytes, Depends(raw_body)]
JsonBody = Annotated[Any, Depends(json_body)]
