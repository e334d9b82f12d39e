"""The database as route dependencies: the engine, the session factory and the request's
unit of work.

``UowDep`` is the request's unit of work, shared by every dependency of the request;
what it did not commit is rolled back when the request ends. A route that changes data
takes ``WriteUow`` instead: the same unit of work, committed once the route has
returned and its answer is serialised, and before that answer is sent, so a client
never reads an answer for a change that is not stored. A route that fails (an
exception) commits nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fieldwatch.core.components import BusDep, Slot
from fieldwatch.db.uow import UnitOfWork

ENGINE: Slot[AsyncEngine] = Slot("engine")
SESSIONMAKER: Slot[async_sessionmaker[AsyncSession]] = Slot("sessionmaker")

EngineDep = Annotated[AsyncEngine, Depends(ENGINE)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(SESSIONMAKER)]


async def get_uow(sessionmaker: SessionmakerDep, bus: BusDep) -> AsyncIterator[UnitOfWork]:
    """One unit of work per request, closed (and rolled back if not committed) after the
    response."""
    async with UnitOfWork(sessionmaker, bus) as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


async def committing_uow(uow: UowDep) -> AsyncIterator[UnitOfWork]:
    """The request's unit of work, committed when the route returns without an error.

    Function scope: FastAPI leaves this dependency right after the route function and
    the serialisation of its answer, before the response starts, so the commit (and the
    events and callbacks that follow it) comes first. An exception skips the commit;
    ``get_uow`` then rolls back."""
    yield uow
    await uow.commit()


WriteUow = Annotated[UnitOfWork, Depends(committing_uow, scope="function")]
