"""What the device page's firmware part shows: the device's updates, newest first, and
the workspace's artifacts built for the device's type (those an operator may choose)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from fieldwatch.auth.principal import Principal
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.models import Device
from fieldwatch.firmware.artifacts.dependencies import FIRMWARE_FILES
from fieldwatch.firmware.artifacts.service import ArtifactService
from fieldwatch.firmware.updates import states as st
from fieldwatch.firmware.updates.dependencies import FIRMWARE_UPDATES
from fieldwatch.firmware.updates.service import UpdateService

UPDATES_SHOWN = 20
ARTIFACTS_OFFERED = 100
CANCELLABLE = tuple(s for s in st.OPEN if s not in st.NOT_CANCELLABLE)
NOTICES = {
    "started": "The update is started; it is sent when the device is reachable.",
    "cancelled": "The update is cancelled.",
}


def update_service(request: Request, uow: UnitOfWork) -> UpdateService:
    """The process's update service (as the API's dependency makes it)."""
    return FIRMWARE_UPDATES.of(request.app).service(uow)


async def firmware(
    request: Request,
    principal: Principal,
    uow: UnitOfWork,
    device: Device,
    problem: str | None = None,
) -> dict[str, Any]:
    """The part's context (``problem``: why an update was just refused)."""
    updates, total = await update_service(request, uow).page(
        principal, device_id=device.id, states=[], rollout_id=None,
        limit=UPDATES_SHOWN, offset=0,
    )  # fmt: skip
    artifacts = ArtifactService(uow, FIRMWARE_FILES.of(request.app).store)
    offered, _ = await artifacts.page(
        principal, device_type=device.type, limit=ARTIFACTS_OFFERED, offset=0
    )
    return {
        "updates": updates, "total": total, "offered": offered,
        "sizes": {a.id: a.size for a in offered}, "cancellable": CANCELLABLE,
        "problem": problem, "notice": NOTICES.get(request.query_params.get("fw") or ""),
    }  # fmt: skip
