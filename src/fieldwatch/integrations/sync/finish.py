"""Ending a run: its final state, the device's sync status, and the retry that follows
a failure that may pass (in ``retry_wait`` until its backoff is over), in one
transaction, only by the process that still holds the run."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.sync.events import sync_event
from fieldwatch.integrations.sync.repository import SyncRepository
from fieldwatch.integrations.sync.runs import backoff_s, open_run

log = logging.getLogger(__name__)

#: The device's sync status after a run that ended so.
DEVICE_STATUS = {"completed": "ok", "partial": "error", "failed": "error",
                 "auth_required": "auth_required", "cancelled": "pending"}  # fmt: skip


@dataclass
class Outcome:
    status: str
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    #: The failure may pass: a retry follows (up to ``max_sync_retries``).
    retry: bool = True
    retry_after: float | None = None


async def finish(
    uow_factory: Callable[[], UnitOfWork],
    settings: Settings,
    run_id: uuid.UUID,
    owner: str,
    outcome: Outcome,
    now: datetime,
) -> str | None:
    async with uow_factory() as uow:
        repo = SyncRepository(uow.session)
        run = await repo.run(None, run_id)
        if run is None:
            return None
        started = run.start_time or now
        held = await repo.update_claimed(
            run.id, owner, status=outcome.status, end_time=now,
            duration_seconds=round((now - started).total_seconds(), 3),
            error_message=outcome.error_message, error_details=outcome.error_details,
            claimed_until=None,
        )  # fmt: skip
        if not held:
            return None
        await uow.session.refresh(run)
        uow.emit(sync_event(run, "running"))
        values: dict[str, Any] = {"sync_status": DEVICE_STATUS[outcome.status]}
        if outcome.status == "completed":
            values |= {"last_sync_at": now, "failures": 0}
        elif outcome.status in ("partial", "failed"):
            sync = await repo.device_sync(None, run.device_id)
            values["failures"] = (sync.failures if sync is not None else 0) + 1
        await repo.set_device_sync(run.device_id, **values)
        failed = outcome.status in ("partial", "failed")
        if failed and outcome.retry and run.attempt <= settings.max_sync_retries:
            sync = await repo.device_sync(None, run.device_id)
            wait = backoff_s(settings, run.attempt, outcome.retry_after)
            if sync is not None:
                retry = await open_run(uow, sync, run.sync_type, f"retry:{run.id}",
                                       data_types=run.data_types, retry_of=run,
                                       not_before=now + timedelta(seconds=wait))  # fmt: skip
                retry.since = run.since  # the window a notification named, still wanted
        await uow.commit()
    log.info("sync %s %s", run_id, outcome.status,
             extra={"sync_id": str(run_id), "status": outcome.status})  # fmt: skip
    return outcome.status
