"""What a rollout looks like from outside: its figures overall and per wave, its
devices with their update states."""

from __future__ import annotations

from collections.abc import Sequence

from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.models import Rollout
from fieldwatch.firmware.rollouts.figures import fold
from fieldwatch.firmware.rollouts.repository import RolloutRepository
from fieldwatch.firmware.rollouts.schemas import (
    Figures,
    RolloutDetail,
    RolloutDeviceRead,
    RolloutRead,
    WaveRead,
)


class RolloutViews:
    def __init__(self, uow: UnitOfWork) -> None:
        self.rollouts = RolloutRepository(uow.session)

    async def waves(self, rollout: Rollout) -> tuple[Figures, list[WaveRead]]:
        overall, per_wave = fold(await self.rollouts.state_counts(rollout.id))
        waves = [
            WaveRead.model_validate(w).model_copy(
                update={"figures": per_wave.get(w.number, Figures())}
            )
            for w in await self.rollouts.waves(rollout.id)
        ]
        return overall, waves

    async def detail(self, rollout: Rollout) -> RolloutDetail:
        overall, waves = await self.waves(rollout)
        current = next(
            (w.number for w in waves if w.status in ("running", "soaking", "pending")), None
        )
        if rollout.status in ("draft", "completed", "aborted"):
            current = None
        return RolloutDetail(
            **RolloutRead.model_validate(rollout).model_dump(),
            current_wave=current,
            figures=overall,
            waves=waves,
        )

    async def devices(
        self,
        rollout: Rollout,
        *,
        wave: int | None,
        state: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[RolloutDeviceRead], int]:
        rows, total = await self.rollouts.devices_page(
            rollout.id, wave=wave, state=state, limit=limit, offset=offset
        )
        items = []
        for target, name, update in rows:
            if target.released_at is None:
                state_now = "unreleased"
            else:
                state_now = update.state if update is not None else "skipped"
            items.append(
                RolloutDeviceRead(
                    device_id=target.device_id,
                    name=name,
                    wave=target.wave,
                    released_at=target.released_at,
                    update_id=update.command_id if update is not None else None,
                    state=state_now,
                    reason=update.reason if update is not None else target.skip_reason,
                    detail=update.detail if update is not None else target.skip_detail,
                    tries=update.tries if update is not None else None,
                )
            )
        return items, total
