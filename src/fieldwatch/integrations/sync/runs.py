"""Rules every creator of runs follows (the API, the scheduler, the runner's retries):
a new run's state and attempt, and how long a retry waits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from fieldwatch.core.errors import Conflict
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.models import DeviceSync, SyncRun
from fieldwatch.integrations.sync.events import sync_event
from fieldwatch.integrations.sync.repository import SyncRepository

#: The longest a retry waits (unless the vendor's Retry-After says longer).
MAX_BACKOFF_S = 3600.0


class SyncInProgress(Conflict):
    slug, title = "sync-in-progress", "A sync of this device is open"


def backoff_s(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """The wait before retry number ``attempt`` (1 for the first): doubling from
    ``sync_retry_base_s`` up to an hour, never shorter than the vendor's Retry-After."""
    wait = min(settings.sync_retry_base_s * 2 ** max(0, attempt - 1), MAX_BACKOFF_S)
    return max(wait, retry_after or 0.0)


async def open_run(
    uow: UnitOfWork,
    sync: DeviceSync,
    sync_type: str,
    requested_by: str,
    *,
    data_types: Sequence[str] = (),
    bulk_id: uuid.UUID | None = None,
    retry_of: SyncRun | None = None,
    not_before: datetime | None = None,
) -> SyncRun:
    """A new run for ``sync``'s device, unless it has one still open (one at a time:
    ``SyncInProgress`` names it). Its creation is published after commit."""
    repo = SyncRepository(uow.session)
    existing = await repo.open_runs([sync.device_id])
    if existing:
        raise SyncInProgress(
            f"Device {sync.device_id} has a sync {existing[0].status} already; follow it, "
            "or retry once it has ended.",
            sync_id=str(existing[0].id),
            sync_status=existing[0].status,
        )
    run = SyncRun(
        id=uuid.uuid4(), workspace_id=sync.workspace_id, device_id=sync.device_id,
        connection_id=sync.connection_id, sync_type=sync_type,
        status="retry_wait" if not_before is not None else "queued",
        attempt=retry_of.attempt + 1 if retry_of is not None else 1,
        retry_of=retry_of.id if retry_of is not None else None,
        bulk_id=bulk_id if bulk_id is not None or retry_of is None else retry_of.bulk_id,
        requested_by=requested_by, data_types=list(data_types), not_before=not_before,
        records_processed=0, records_synced=0, records_failed=0,
    )  # fmt: skip
    repo.add(run)
    await uow.session.flush()
    uow.emit(sync_event(run, None))
    return run
