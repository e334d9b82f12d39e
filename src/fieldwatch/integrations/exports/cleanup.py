"""Deleting kept health exports: a periodic job of the sync engine in every process.

An uploaded export is kept until a run has read it whole; a failed, partial or cancelled
run keeps it for its retry. Once a kept file is older than
``health_export_keep_hours`` and no run of it is open (queued, waiting or running), it
is deleted: a retry after that answers that the export is no longer kept (upload it
again). Leftovers of uploads that never finished (``.upload-*``) and of readings of
overlapping sources (``.overlap-*``) older than that go too. Safe with several
processes: deleting a file twice is nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import anyio.to_thread
from sqlalchemy import select

from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.integrations.exports.base import SUFFIXES, exports_dir
from fieldwatch.integrations.models import SyncRun
from fieldwatch.integrations.sync.schemas import OPEN

log = logging.getLogger(__name__)

PERIOD = timedelta(minutes=10)
LEFTOVERS = (".upload-", ".overlap-")


def _upload_id(path: Path) -> uuid.UUID | None:
    stem, _, suffix = path.name.partition(".")
    if suffix not in SUFFIXES:
        return None
    try:
        return uuid.UUID(stem)
    except ValueError:
        return None


def _old_files(directory: Path, cutoff: float) -> list[Path]:
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir()
            if p.is_file() and p.stat().st_mtime < cutoff]  # fmt: skip


class ExportCleanup:
    def __init__(self, uow: Callable[[], UnitOfWork], settings: Settings,
                 clock: Callable[[], datetime]) -> None:  # fmt: skip
        self.uow = uow
        self.settings = settings
        self.clock = clock
        self._last: datetime | None = None

    async def maybe_run(self) -> int:
        now = self.clock()
        if self._last is not None and now - self._last < PERIOD:
            return 0
        self._last = now
        return await self.run_safely()

    async def run_safely(self) -> int:
        """``run`` as a periodic job's tick: how many were deleted; failures logged."""
        try:
            return len(await self.run())
        except Exception:
            log.exception("kept health exports could not be cleaned up")
            return 0

    async def run(self) -> list[Path]:
        """Delete what is past keeping (see the module's description); what was deleted."""
        keep = timedelta(hours=self.settings.health_export_keep_hours)
        cutoff = (self.clock() - keep).timestamp()
        old = await anyio.to_thread.run_sync(_old_files, exports_dir(self.settings), cutoff)
        kept = {p: _upload_id(p) for p in old}
        busy = await self._open({i for i in kept.values() if i is not None})
        doomed = [p for p, i in kept.items()
                  if (i is not None and i not in busy) or p.name.startswith(LEFTOVERS)]  # fmt: skip
        for path in doomed:
            path.unlink(missing_ok=True)
        if doomed:
            log.info("kept health exports deleted", extra={"files": len(doomed)})
        return doomed

    async def _open(self, upload_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        """Those of ``upload_ids`` a run of which is still open."""
        if not upload_ids:
            return set()
        async with self.uow() as uow:
            rows: Sequence[uuid.UUID | None] = (await uow.session.scalars(
                select(SyncRun.bulk_id).where(SyncRun.bulk_id.in_(list(upload_ids)),
                                              SyncRun.status.in_(OPEN))
            )).all()  # fmt: skip
        return {r for r in rows if r is not None}
