"""HTTP: where the vendors call Fieldwatch (no login: Oura's calls are verified by their
signature or verification token, Google Health's by Google's signature and the
subscriber's secret; Withings' are hints only). The address to register is
``$FIELDWATCH_PUBLIC_URL/api/v1/integrations/{oura|withings|google_health}/webhook``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import NotFound
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.integrations.dependencies import GoogleHealthKeysDep
from fieldwatch.integrations.webhooks.service import HintService
from fieldwatch.telemetry.dependencies import TelemetryDep

#: Included by the integrations router (under its ``/api/v1/integrations``).
router = APIRouter()

NOTIFIED = ("oura", "withings", "google_health")


async def get_hints(uow: UowDep, settings: SettingsDep) -> HintService:
    return HintService(uow, settings)


HintsDep = Annotated[HintService, Depends(get_hints)]


def _known(kind: str) -> None:
    if kind not in NOTIFIED:
        raise NotFound(f"No notifications from {kind!r}.")


@router.get("/{kind}/webhook", response_model=None)
async def webhook_check(
    kind: str,
    hints: HintsDep,
    verification_token: Annotated[str | None, Query(max_length=500)] = None,
    challenge: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, str] | Response:
    """The vendor checks its callback: Oura sends the verification token given when
    subscribing and a challenge, answered back; Withings asks for a 200."""
    _known(kind)
    if kind == "oura" and (verification_token is not None or challenge is not None):
        return {"challenge": await hints.oura_challenge(verification_token or "",
                                                        challenge or "")}  # fmt: skip
    return Response(status_code=200)


@router.head("/{kind}/webhook", response_class=Response)
async def webhook_head(kind: str) -> Response:
    """Withings checks its callback answers (HEAD) before subscribing."""
    _known(kind)
    return Response(status_code=200)


@router.post("/{kind}/webhook", status_code=204, response_class=Response)
async def webhook_notification(
    kind: str,
    request: Request,
    uow: WriteUow,
    hints: HintsDep,
    telemetry: TelemetryDep,
    google_keys: GoogleHealthKeysDep,
) -> Response:
    """A notification: Oura's signed (a refused signature is a 401 and nothing is
    queued), Withings' a form (``userid``, ``appli``, ``startdate``, ``enddate``),
    Google Health's a JSON array signed by Google (``GOOGLE-HEALTH-API-SIGNATURE``; an
    unsigned or forged one is a 401; its endpoint check, ``{"type": "verification"}``,
    is answered 201 with the subscriber's secret in ``Authorization``). It queues a
    `webhook` sync of the account's devices, merged into one queued already; a deletion
    at the vendor removes what was stored of it."""
    _known(kind)
    headers = {k.lower(): v for k, v in request.headers.items()}
    if kind == "oura":
        await hints.oura(await request.body(), headers, telemetry)
        return Response(status_code=204)
    if kind == "google_health":
        checked = await hints.google_health_delivery(await request.body(), headers,
                                                     google_keys, telemetry)  # fmt: skip
        return Response(status_code=201 if checked else 204)
    form = {k: str(v) for k, v in (await request.form()).items()}
    await hints.withings(form)
    return Response(status_code=200)
