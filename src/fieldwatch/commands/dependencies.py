"""The command ledger's request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.commands.service import CommandService
from fieldwatch.runtime import RuntimeDep, UowDep


async def get_command_service(uow: UowDep, runtime: RuntimeDep) -> CommandService:
    """The request's ``CommandService``, from the dispatcher (settings applied)."""
    return runtime.commands.service(uow)


CommandServiceDep = Annotated[CommandService, Depends(get_command_service)]
