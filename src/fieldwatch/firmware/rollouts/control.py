"""The changes of a rollout's and its waves' status, for the operator's routes and the
engine alike: conditional UPDATEs, an event after commit for each change that applied."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.models import Rollout, RolloutWave
from fieldwatch.firmware.rollouts.events import rollout_event
from fieldwatch.firmware.rollouts.repository import UNSTARTED, RolloutRepository
from fieldwatch.firmware.updates.service import UpdateService

log = logging.getLogger(__name__)

ACTIVE = ("running", "paused")


class RolloutControl:
    def __init__(self, uow: UnitOfWork, updates: UpdateService | None, now: datetime) -> None:
        self.uow = uow
        self.rollouts = RolloutRepository(uow.session)
        self.updates = updates
        self.now = now

    async def set_status(
        self,
        rollout: Rollout,
        from_statuses: Sequence[str],
        to_status: str,
        *,
        reason: str | None,
        **values: Any,
    ) -> Rollout | None:
        previous = rollout.status
        changed = await self.rollouts.change(
            rollout.id,
            from_statuses,
            {"status": to_status, "status_reason": reason, "updated_at": self.now, **values},
        )
        if changed is not None:
            self.uow.emit(rollout_event(changed, previous))
            log.info(
                "rollout %s: %s -> %s", changed.id, previous, to_status,
                extra={"rollout_id": str(changed.id), "reason": reason},
            )  # fmt: skip
        return changed

    async def abort(
        self,
        rollout: Rollout,
        from_statuses: Sequence[str],
        *,
        reason: str,
        by: str,
        expire: str | None = None,
    ) -> Rollout | None:
        """Stop for good: what has not been released stays so, released updates the
        device has not started on are cancelled (``UpdateService.cancel_by``, in the
        rollout's name: "cancelled by rollout:<id>", and who aborted it when that was
        not the engine) or, with ``expire`` (the detail: the window ended), expire;
        devices mid-update finish (or time out) on their own."""
        changed = await self.set_status(
            rollout, from_statuses, "aborted", reason=reason, finished_at=self.now
        )
        if changed is None:
            return None
        await self.rollouts.halt_waves(rollout.id)
        if self.updates is not None:
            actor = f"rollout:{rollout.id}"
            if by != actor:
                actor += f", aborted by {by}"
            for update in await self.rollouts.unstarted_updates(rollout.id):
                if expire is not None:
                    await self.updates.expire_by(update, expire, from_states=UNSTARTED)
                else:
                    await self.updates.cancel_by(update, actor, from_states=UNSTARTED)
        return changed

    async def stop(self, rollout: Rollout, *, on_failure: str, reason: str) -> Rollout | None:
        """The engine's automatic stop: pause or abort, as the rollout says."""
        if on_failure == "abort":
            return await self.abort(
                rollout, ("running",), reason=reason, by=f"rollout:{rollout.id}"
            )
        return await self.set_status(rollout, ("running",), "paused", reason=reason)

    async def set_wave(
        self,
        rollout: Rollout,
        wave: RolloutWave,
        from_statuses: Sequence[str],
        to_status: str,
        **values: Any,
    ) -> RolloutWave | None:
        changed = await self.rollouts.change_wave(
            wave.id, from_statuses, {"status": to_status, **values}
        )
        if changed is not None:
            self.uow.emit(rollout_event(rollout, rollout.status, changed))
        return changed
