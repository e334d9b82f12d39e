"""The command ledger's request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.commands.delivery import CommandDispatcher
from fieldwatch.commands.service import CommandService
from fieldwatch.core.components import Slot
from fieldwatch.db.dependencies import UowDep

COMMANDS: Slot[CommandDispatcher] = Slot("command_dispatcher")
CommandDispatcherDep = Annotated[CommandDispatcher, Depends(COMMANDS)]


async def get_command_service(uow: UowDep, dispatcher: CommandDispatcherDep) -> CommandService:
    """The request's ``CommandService``, from the dispatcher (settings applied)."""
    return dispatcher.service(uow)


CommandServiceDep = Annotated[CommandService, Depends(get_command_service)]
