"""Rules of firmware rollouts: create (a draft), dry run, start, pause, resume, abort.

``draft → running ⇄ paused → completed | aborted``. Starting snapshots the eligible
targets (``planning``) into waves; the engine (``engine``) then releases them. Every
status change is a conditional UPDATE and a ``firmware.rollout_changed`` event after
commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from fieldwatch.auth.principal import Principal
from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import found_in_workspace
from fieldwatch.core.settings import Settings
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.models import FirmwareArtifact, Rollout, RolloutWave
from fieldwatch.firmware.rollouts import planning, targets
from fieldwatch.firmware.rollouts.control import ACTIVE, RolloutControl
from fieldwatch.firmware.rollouts.errors import (
    NothingToUpdate,
    RolloutNotFound,
    RolloutStateConflict,
    TargetInvalid,
    WindowInvalid,
)
from fieldwatch.firmware.rollouts.events import rollout_event
from fieldwatch.firmware.rollouts.figures import fold, judge
from fieldwatch.firmware.rollouts.repository import RolloutRepository
from fieldwatch.firmware.rollouts.schemas import (
    DryRun,
    DryRunDevice,
    PlannedWave,
    RolloutCreate,
)
from fieldwatch.firmware.updates.repository import UpdateRepository
from fieldwatch.firmware.updates.service import UpdateService


class RolloutService:
    def __init__(
        self,
        uow: UnitOfWork,
        *,
        settings: Settings,
        updates: UpdateService | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.rollouts = RolloutRepository(uow.session)
        self.updates = updates
        self.clock = clock

    # --- drafts -----------------------------------------------------------------------

    async def create(self, principal: Principal, body: RolloutCreate) -> Rollout:
        await self._artifact(principal.workspace_id, body.artifact_id)
        target = body.target.stored()
        await targets.check(self.uow.session, principal.workspace_id, target)
        now = self.clock()
        if body.window_end is not None and body.window_end <= now:
            raise WindowInvalid(
                "The window has already ended.",
                errors=[{"field": "window_end", "message": "in the past", "type": "past"}],
            )
        rollout = Rollout(
            workspace_id=principal.workspace_id,
            name=body.name,
            artifact_id=body.artifact_id,
            target=target,
            status="draft",
            canary=body.canary,
            percentages=list(body.percentages),
            soak_s=body.soak_s,
            failure_threshold=body.failure_threshold,
            min_finished=body.min_finished,
            on_failure=body.on_failure,
            rate_per_minute=body.rate_per_minute,
            jitter_s=body.jitter_s,
            max_tries=body.max_tries or self.settings.firmware_max_tries,
            window_start=body.window_start,
            window_end=body.window_end,
            created_by=principal.actor,
            created_at=now,
            updated_at=now,
        )
        self.rollouts.add(rollout)
        await self.uow.session.flush()
        self.uow.emit(rollout_event(rollout, None))
        return rollout

    async def get(self, principal: Principal, rollout_id: uuid.UUID) -> Rollout:
        found = await self.rollouts.get(principal.workspace_id, rollout_id)
        return found_in_workspace(found, "rollout", rollout_id, RolloutNotFound)

    async def page(
        self, principal: Principal, statuses: Sequence[str], *, limit: int, offset: int
    ) -> tuple[Sequence[Rollout], int]:
        return await self.rollouts.page(
            principal.workspace_id, statuses, limit=limit, offset=offset
        )

    # --- dry runs ---------------------------------------------------------------------

    async def dry_run(
        self, principal: Principal, body: RolloutCreate, *, limit: int, offset: int
    ) -> DryRun:
        artifact = await self._artifact(principal.workspace_id, body.artifact_id)
        target = body.target.stored()
        await targets.check(self.uow.session, principal.workspace_id, target)
        found = await self._plan(principal.workspace_id, artifact, target, body.canary,
                                 body.percentages)  # fmt: skip
        return _dry_run(found, limit=limit, offset=offset)

    async def dry_run_of(
        self, principal: Principal, rollout_id: uuid.UUID, *, limit: int, offset: int
    ) -> DryRun:
        rollout = await self.get(principal, rollout_id)
        if rollout.status != "draft":
            raise RolloutStateConflict(
                f"Rollout {rollout_id} is {rollout.status}: its devices are fixed; see its "
                "figures and devices instead.",
                rollout_status=rollout.status,
            )
        artifact = await self._artifact(rollout.workspace_id, rollout.artifact_id)
        found = await self._plan(rollout.workspace_id, artifact, rollout.target, rollout.canary,
                                 rollout.percentages)  # fmt: skip
        return _dry_run(found, limit=limit, offset=offset)

    async def _artifact(self, workspace_id: uuid.UUID, artifact_id: uuid.UUID) -> FirmwareArtifact:
        artifact = await UpdateRepository(self.uow.session).artifact(workspace_id, artifact_id)
        if artifact is None:
            raise TargetInvalid(
                f"No firmware artifact {artifact_id} in this workspace.",
                errors=[{"field": "artifact_id", "message": "no such artifact", "type": "unknown"}],
            )
        return artifact

    async def _plan(
        self,
        workspace_id: uuid.UUID,
        artifact: FirmwareArtifact,
        target: dict[str, object],
        canary: int,
        percentages: Sequence[int],
    ) -> planning.Plan:
        ids = await targets.device_ids(self.uow.session, workspace_id, dict(target))
        devices = await self.rollouts.candidates(workspace_id, ids)
        busy = await self.rollouts.with_open_updates(workspace_id, ids)
        repository = UpdateRepository(self.uow.session)
        levels = await repository.security_versions(workspace_id)
        unsigned = artifact.signature is None and await repository.require_signed(workspace_id)
        return planning.plan(
            devices, artifact, artifact.id, levels, busy, canary=canary,
            percentages=percentages, unsigned_refused=unsigned,
        )  # fmt: skip

    # --- start, pause, resume, abort --------------------------------------------------

    async def start(self, principal: Principal, rollout_id: uuid.UUID) -> Rollout:
        """Snapshot the eligible targets into waves and set the first one running."""
        rollout = await self.get(principal, rollout_id)
        now = self.clock()
        if (
            rollout.status == "draft"
            and rollout.window_end is not None
            and (rollout.window_end <= now)
        ):
            raise RolloutStateConflict(
                f"Rollout {rollout.id}'s window ended at {rollout.window_end.isoformat()}: "
                "create a new rollout with a window ahead.",
                rollout_status=rollout.status, reason="window_ended",
            )  # fmt: skip
        control = RolloutControl(self.uow, self.updates, now)
        started = await control.set_status(
            rollout, ("draft",), "running", reason=None, started_at=now
        )
        if started is None:
            raise self._conflict(rollout, "started", "a draft")
        artifact = await self._artifact(rollout.workspace_id, rollout.artifact_id)
        found = await self._plan(rollout.workspace_id, artifact, rollout.target, rollout.canary,
                                 rollout.percentages)  # fmt: skip
        if found.included == 0:
            reason = found.why_none()
            because = (
                ": it is not signed and this workspace requires signed firmware"
                if reason == planning.UNSIGNED else ""
            )  # fmt: skip
            raise NothingToUpdate(
                f"None of the {found.targets} target devices can take {artifact.version}{because}.",
                reason=reason,
                excluded_by_reason=found.excluded_by_reason(),
            )
        await self.rollouts.insert_targets(
            rollout.id, [[d.id for d in wave] for wave in found.waves]
        )
        for number, wave in enumerate(found.waves, start=1):
            first = number == 1
            self.rollouts.add(
                RolloutWave(
                    rollout_id=rollout.id, number=number, size=len(wave),
                    status="running" if first else "pending", started_at=now if first else None,
                )
            )  # fmt: skip
        await self.uow.session.flush()
        return started

    async def pause(self, principal: Principal, rollout_id: uuid.UUID) -> Rollout:
        rollout = await self.get(principal, rollout_id)
        control = RolloutControl(self.uow, self.updates, self.clock())
        changed = await control.set_status(
            rollout, ("running",), "paused", reason=f"paused by {principal.actor}"
        )
        if changed is None:
            raise self._conflict(rollout, "paused", "a running")
        return changed

    async def resume(self, principal: Principal, rollout_id: uuid.UUID) -> Rollout:
        """Run again. When the current wave's failures stopped it, resuming accepts
        them: the wave's failure share counts the devices released from now on."""
        rollout = await self.get(principal, rollout_id)
        now = self.clock()
        control = RolloutControl(self.uow, self.updates, now)
        changed = await control.set_status(rollout, ("paused",), "running", reason=None)
        if changed is None:
            raise self._conflict(rollout, "resumed", "a paused")
        wave = next((w for w in await self.rollouts.waves(rollout.id) if w.status == "running"),
                    None)  # fmt: skip
        if wave is not None and wave.since is not None:
            judged = fold(await self.rollouts.state_counts(
                rollout.id, wave=wave.number, since=wave.since))[0]  # fmt: skip
            whole = fold(await self.rollouts.state_counts(rollout.id, wave=wave.number))[0]
            verdict = judge(
                wave.number, judged, whole, threshold=changed.failure_threshold,
                min_finished=changed.min_finished,
            )  # fmt: skip
            if verdict.stop:  # it would stop again at once: the failures are accepted
                await self.rollouts.change_wave(wave.id, ("running",), {"judged_from": now})
        return changed

    async def abort(self, principal: Principal, rollout_id: uuid.UUID) -> Rollout:
        rollout = await self.get(principal, rollout_id)
        control = RolloutControl(self.uow, self.updates, self.clock())
        changed = await control.abort(
            rollout, ACTIVE, reason=f"aborted by {principal.actor}", by=principal.actor
        )
        if changed is None:
            raise self._conflict(rollout, "aborted", "a running or paused")
        return changed

    @staticmethod
    def _conflict(rollout: Rollout, verb: str, what: str) -> RolloutStateConflict:
        return RolloutStateConflict(
            f"Rollout {rollout.id} is {rollout.status}; only {what} rollout can be {verb}.",
            rollout_status=rollout.status,
        )


def _dry_run(found: planning.Plan, *, limit: int, offset: int) -> DryRun:
    rows: list[DryRunDevice] = []
    end = offset + limit
    for number, wave in enumerate(found.waves, start=1):
        for d in wave:
            if len(rows) >= end:
                break
            rows.append(_dry_device(d, wave=number))
    for d, why in found.excluded:
        if len(rows) >= end:
            break
        rows.append(_dry_device(d, reason=why.reason, detail=why.detail))
    return DryRun(
        targets=found.targets,
        included=found.included,
        excluded=len(found.excluded),
        waves=[PlannedWave(number=n, size=len(w)) for n, w in enumerate(found.waves, start=1)],
        excluded_by_reason=found.excluded_by_reason(),
        items=rows[offset:end],
        total=found.targets,
        limit=limit,
        offset=offset,
    )


def _dry_device(
    d: planning.Candidate, *, wave: int | None = None, reason: str | None = None,
    detail: str | None = None,
) -> DryRunDevice:  # fmt: skip
    return DryRunDevice(
        device_id=d.id, name=d.name, type=d.type, firmware_version=d.firmware_version,
        wave=wave, reason=reason, detail=detail,
    )  # fmt: skip
