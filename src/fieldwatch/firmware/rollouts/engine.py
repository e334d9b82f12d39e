"""The rollout engine advances running rollouts: ``run``, a worker's periodic job.

Every ``interval_s`` (each tick claimed by one process) it takes each running rollout in
a transaction of its own, with the rollout's row locked (so one process at a time
advances a rollout) and:

1. a soaking wave whose soak is over completes; the next wave starts (after the last
   one, the rollout completes);
2. the running wave is judged: once ``min_finished`` of the updates it released since
   it started finished (completed or failed) and the failed share is above
   ``failure_threshold``, the rollout stops (pause or abort, as configured) with the
   numbers in ``status_reason``, and nothing more is released;
3. within the window, the wave's devices are released: at most ``rate_per_minute`` in
   any minute (counted from ``released_at`` in the database, so a restart or another
   process keeps the cap), paced evenly over the minute rather than all at its start
   (``paced_budget``: a 12,000-an-hour rollout releases a few devices a second, not 200
   at once every minute), each no earlier than its jitter offset (a fixed share of
   ``jitter_s`` from the device's id) after the wave started. Each release is claimed
   (``released_at IS NULL``) and creates the device's update through the update service
   (it expires with the window); a device no longer eligible is skipped, with its
   reason kept on its row (``skip_reason``, ``skip_detail``);
4. a wave whose devices are all released and whose updates are all final is judged once
   more (only completed updates count as success: failed and expired ones against the
   threshold, however few), then soaks ``soak_s`` or, the last one, completes the rollout.

A window that ends with devices still unreleased, or updates not started, aborts the
rollout (its unstarted updates expire, naming the window). Nothing lives in memory:
after a restart the next run continues from the database.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from fieldwatch.core.clock import utcnow
from fieldwatch.core.errors import AppError
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.models import Device
from fieldwatch.firmware.compat import refusal
from fieldwatch.firmware.models import FirmwareArtifact, Rollout, RolloutWave
from fieldwatch.firmware.rollouts.control import RolloutControl
from fieldwatch.firmware.rollouts.figures import fold, judge_ended, judge_running
from fieldwatch.firmware.rollouts.planning import OPEN_UPDATE
from fieldwatch.firmware.rollouts.releases import UpdatesFactory
from fieldwatch.firmware.rollouts.repository import RolloutRepository
from fieldwatch.firmware.rollouts.schemas import Figures
from fieldwatch.firmware.updates.errors import UpdateRunning
from fieldwatch.firmware.updates.repository import UpdateRepository
from fieldwatch.firmware.updates.service import UpdateService

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
#: Devices one advance may release at least (a slow cap releases its minute at once).
MIN_BURST = 5
#: A skipped device's reason when the update service refused it for another cause.
REFUSED = "refused"


def paced_budget(rate_per_minute: int, elapsed_s: float, released: int) -> int:
    """How many more devices a wave may release now so that its releases follow the
    cap evenly: ``rate_per_minute × elapsed / 60`` since the wave started, plus a burst
    of ``max(MIN_BURST, rate/60)`` (also the most one advance releases, so a rollout
    resumed after a pause does not release its whole minute at once)."""
    burst = max(MIN_BURST, math.ceil(rate_per_minute / 60))
    paced = math.floor(rate_per_minute * max(elapsed_s, 0.0) / 60) + burst - released
    return max(0, min(paced, burst))


def jitter_offset(rollout_id: uuid.UUID, device_id: uuid.UUID, jitter_s: int) -> timedelta:
    if jitter_s <= 0:
        return timedelta(0)
    digest = hashlib.sha256(rollout_id.bytes + device_id.bytes).digest()
    return timedelta(seconds=int.from_bytes(digest[:4], "big") % (jitter_s + 1))


class RolloutEngine:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        updates: UpdatesFactory,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.uow = uow
        self.updates = updates
        self.interval_s = interval_s
        #: The time rollouts go by (tests move it; routes use it too).
        self.clock = clock

    async def run(self) -> None:
        """Advance every running rollout once."""
        async with self.uow() as uow:
            ids = await RolloutRepository(uow.session).running_ids()
        for rollout_id in ids:
            try:
                await self.advance(rollout_id)
            except Exception:
                log.exception("advancing rollout %s failed", rollout_id)

    async def advance(self, rollout_id: uuid.UUID) -> None:
        async with self.uow() as uow:
            step = _Step(uow, self.updates(uow), self.clock())
            await step.run(rollout_id)
            await uow.commit()


class _Step:
    """One advance of one rollout, in one transaction."""

    def __init__(self, uow: UnitOfWork, updates: UpdateService, now: datetime) -> None:
        self.uow = uow
        self.updates = updates
        self.now = now
        self.rollouts = RolloutRepository(uow.session)
        self.control = RolloutControl(uow, updates, now)

    async def run(self, rollout_id: uuid.UUID) -> None:
        rollout = await self.rollouts.lock_running(rollout_id)
        if rollout is None:
            return  # paused, finished, or another process got it
        waves = list(await self.rollouts.waves(rollout.id))
        wave = next((w for w in waves if w.status not in ("completed", "halted")), None)
        if wave is not None and wave.status == "soaking":
            if wave.soak_until is not None and self.now < wave.soak_until:
                return
            await self.control.set_wave(rollout, wave, ("soaking",), "completed",
                                        completed_at=self.now)  # fmt: skip
            wave = next((w for w in waves if w.number > wave.number), None)
        if wave is None:
            await self._complete(rollout)
            return
        if wave.status == "pending":
            started = await self.control.set_wave(rollout, wave, ("pending",), "running",
                                                  started_at=self.now)  # fmt: skip
            wave = started or wave
        await self._running(rollout, wave, is_last=wave.number == waves[-1].number)

    async def _running(self, rollout: Rollout, wave: RolloutWave, *, is_last: bool) -> None:
        since = wave.since or self.now
        judged = await self._figures(rollout, wave, since)
        verdict = judge_running(
            wave.number, judged, threshold=rollout.failure_threshold,
            min_finished=rollout.min_finished,
        )  # fmt: skip
        if verdict.stop and verdict.reason:
            await self.control.stop(rollout, on_failure=rollout.on_failure, reason=verdict.reason)
            return
        end = rollout.window_end
        if end is not None and self.now >= end and await self._window_ended(rollout, end):
            return
        if rollout.window_start is None or self.now >= rollout.window_start:
            await self._release(rollout, wave, since)
        whole = await self._figures(rollout, wave, None)
        if whole.pending or whole.in_progress_total:
            return
        judged = await self._figures(rollout, wave, since)
        verdict = judge_ended(wave.number, judged, threshold=rollout.failure_threshold)
        if verdict.stop and verdict.reason:
            await self.control.stop(rollout, on_failure=rollout.on_failure, reason=verdict.reason)
        elif is_last:
            await self.control.set_wave(rollout, wave, ("running",), "completed",
                                        completed_at=self.now)  # fmt: skip
            await self._complete(rollout)
        else:
            await self.control.set_wave(
                rollout, wave, ("running",), "soaking",
                soak_until=self.now + timedelta(seconds=rollout.soak_s),
            )  # fmt: skip

    async def _window_ended(self, rollout: Rollout, window_end: datetime) -> bool:
        """Past the window: abort when devices were not released, or released updates
        had not started (they expire, naming the window) or expired with it; updates
        under way finish. False: everything was released and started in time."""
        left = await self.rollouts.count_unreleased(rollout.id)
        unstarted = len(await self.rollouts.unstarted_updates(rollout.id))
        expired = fold(await self.rollouts.state_counts(rollout.id))[0].expired
        if not (left or unstarted or expired):
            return False
        ended = f"the window ended at {window_end.isoformat()}"
        missed = [f"{n} {what}" for n, what in ((left, "devices not released"),
                  (unstarted + expired, "updates not started")) if n]  # fmt: skip
        await self.control.abort(
            rollout, ("running",), by=f"rollout:{rollout.id}",
            reason=f"{ended} with {' and '.join(missed)}",
            expire=f"expired: the rollout's window ended at {window_end.isoformat()} "
            "before the device started",
        )  # fmt: skip
        return True

    async def _figures(
        self, rollout: Rollout, wave: RolloutWave, since: datetime | None
    ) -> Figures:
        rows = await self.rollouts.state_counts(rollout.id, wave=wave.number, since=since)
        return fold(rows)[0]

    async def _complete(self, rollout: Rollout) -> None:
        overall = fold(await self.rollouts.state_counts(rollout.id))[0]
        await self.control.set_status(
            rollout, ("running",), "completed", finished_at=self.now,
            reason=f"{overall.completed} of {overall.targets} devices updated",
        )  # fmt: skip

    async def _release(self, rollout: Rollout, wave: RolloutWave, since: datetime) -> int:
        budget = rollout.rate_per_minute - await self.rollouts.released_since(
            rollout.id, self.now - MINUTE
        )
        if budget > 0:
            elapsed_s = (self.now - since).total_seconds()
            released = await self.rollouts.released_since(rollout.id, since)
            budget = min(budget, paced_budget(rollout.rate_per_minute, elapsed_s, released))
        if budget <= 0:
            return 0
        fetch = budget if rollout.jitter_s == 0 else max(budget * 4, 200)
        rows = await self.rollouts.unreleased(rollout.id, wave.number, fetch)
        if not rows:
            return 0
        artifact = await self.uow.session.get(FirmwareArtifact, rollout.artifact_id)
        assert artifact is not None  # RESTRICT: not deleted while a rollout uses it
        levels = await UpdateRepository(self.uow.session).security_versions(rollout.workspace_id)
        released = 0
        for target, device in rows:
            if released >= budget:
                break
            if self.now < since + jitter_offset(rollout.id, device.id, rollout.jitter_s):
                continue
            if not await self.rollouts.claim(target.id, self.now):
                continue
            released += 1
            why = refusal(device, artifact, levels, require_deployed=True)
            if why is not None:
                await self._skip(rollout, target.id, device, why.reason, why.detail)
                continue
            await self._start_update(rollout, wave, target.id, device, artifact)
        return released

    async def _skip(
        self, rollout: Rollout, target_id: uuid.UUID, device: Device, reason: str, detail: str
    ) -> None:
        """A released device no longer eligible: no update, and why is kept."""
        log.info("rollout %s: device %s skipped: %s", rollout.id, device.id, detail)
        await self.rollouts.skip(target_id, reason, detail)

    async def _start_update(
        self,
        rollout: Rollout,
        wave: RolloutWave,
        target_id: uuid.UUID,
        device: Device,
        artifact: FirmwareArtifact,
    ) -> None:
        try:
            async with self.uow.session.begin_nested():
                update = await self.updates.start(
                    workspace_id=rollout.workspace_id,
                    device=device,
                    artifact=artifact,
                    created_by=f"rollout:{rollout.id}",
                    rollout_id=rollout.id,
                    wave=wave.number,
                    max_tries=rollout.max_tries,
                    expires_at=rollout.window_end,
                )
        except AppError as exc:  # no longer eligible (an update of its own, unsigned…)
            if isinstance(exc, UpdateRunning):
                reason = OPEN_UPDATE
            else:
                reason = str(exc.extra.get("reason") or REFUSED)
            await self._skip(rollout, target_id, device, reason, exc.detail)
            return
        await self.rollouts.set_update(target_id, update.command_id)
