"""The running app's shared components, reached by type.

The app assembly (``fieldwatch.runtime.install``) puts each component on ``app.state``
through a ``Slot``; a route or a dependency asks for it with the slot's annotated
dependency (``SettingsDep``, ``BusDep``, the domains' own in their ``dependencies``
modules). Nothing below the assembly needs to know how the app was put together.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar, cast

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from fieldwatch.core.events import EventBus
from fieldwatch.core.settings import Settings

T = TypeVar("T")


class Slot(Generic[T]):
    """One component on ``app.state``, under ``name``. Used as a dependency, it answers
    the component of the app serving the request (or the WebSocket)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def put(self, app: Starlette, value: T) -> None:
        setattr(app.state, self.name, value)

    def of(self, app: Starlette) -> T:
        return cast(T, getattr(app.state, self.name))

    def get(self, app: Starlette) -> T | None:
        """The component, or None when the app has none (yet)."""
        return cast(T | None, getattr(app.state, self.name, None))

    async def __call__(self, connection: HTTPConnection) -> T:
        return self.of(connection.app)

    def __repr__(self) -> str:
        return f"Slot({self.name!r})"


SETTINGS: Slot[Settings] = Slot("settings")
BUS: Slot[EventBus] = Slot("bus")

SettingsDep = Annotated[Settings, Depends(SETTINGS)]
BusDep = Annotated[EventBus, Depends(BUS)]
