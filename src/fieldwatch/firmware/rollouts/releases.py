"""How the engine and the routes get the update service of a unit of work (rollouts
start and cancel per-device updates only through ``UpdateService``)."""

from __future__ import annotations

from collections.abc import Callable

from fieldwatch.db.uow import UnitOfWork
from fieldwatch.firmware.updates.service import UpdateService

#: How the engine and the routes get the update service of a unit of work.
UpdatesFactory = Callable[[UnitOfWork], UpdateService]
