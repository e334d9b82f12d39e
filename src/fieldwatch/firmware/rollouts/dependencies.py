"""Rollouts' request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.core.components import SettingsDep, Slot
from fieldwatch.db.dependencies import UowDep
from fieldwatch.firmware.rollouts.engine import RolloutEngine
from fieldwatch.firmware.rollouts.service import RolloutService

ROLLOUT_ENGINE: Slot[RolloutEngine] = Slot("rollout_engine")
RolloutEngineDep = Annotated[RolloutEngine, Depends(ROLLOUT_ENGINE)]


async def get_rollout_service(
    uow: UowDep, settings: SettingsDep, engine: RolloutEngineDep
) -> RolloutService:
    """The request's ``RolloutService``: the engine's clock and update service."""
    return RolloutService(uow, settings=settings, updates=engine.updates(uow), clock=engine.clock)


RolloutServiceDep = Annotated[RolloutService, Depends(get_rollout_service)]
