"""Domain events and the event bus.

Services queue events on the unit of work; they are published only after the
transaction commits. The in-process bus is the default; later transports (RabbitMQ)
implement the same ``EventBus`` interface.
"""

from __future__ import annotations

import fnmatch
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fieldwatch.core.clock import utcnow
from fieldwatch.core.ids import new_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    workspace_id: uuid.UUID
    payload: dict[str, Any]
    subject_id: uuid.UUID | None = None
    id: uuid.UUID = field(default_factory=new_id)
    occurred_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "workspace_id": str(self.workspace_id),
            "subject_id": str(self.subject_id) if self.subject_id else None,
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload,
        }


Handler = Callable[[Event], Awaitable[None]]


#: The group of the worker role's subscriptions (webhook queueing, offline alerts): on a
#: broker-backed bus one of the group's processes handles each event, and events that
#: come while none runs wait for one (``RabbitMQEventBus``).
WORKERS = "workers"


class EventBus(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(
        self, pattern: str, handler: Handler, *, group: str | None = None
    ) -> Callable[[], None]: ...


class InProcessEventBus:
    """Delivers each event to every handler whose pattern matches its type (``device.*``).

    A failing handler is logged and does not affect the publisher or other handlers.
    Handlers run one after the other, in the order they subscribed. Which handlers an
    event type reaches is worked out once per type (telemetry publishes an event per
    device and request: this is a hot path).
    """

    def __init__(self) -> None:
        self._subs: list[tuple[str, Handler]] = []
        self._by_type: dict[str, tuple[Handler, ...]] = {}
        #: "handler" → handlers that raised (a broker-backed bus also counts "publish").
        self.failures: Counter[str] = Counter()

    def subscribe(
        self, pattern: str, handler: Handler, *, group: str | None = None
    ) -> Callable[[], None]:
        """``group`` matters only across processes: one process, one handler per group."""
        entry = (pattern, handler)
        self._subs.append(entry)
        self._by_type.clear()

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
                self._by_type.clear()

        return unsubscribe

    def handlers(self, event_type: str) -> tuple[Handler, ...]:
        found = self._by_type.get(event_type)
        if found is None:
            found = tuple(h for p, h in self._subs if fnmatch.fnmatchcase(event_type, p))
            self._by_type[event_type] = found
        return found

    async def publish(self, event: Event) -> None:
        # One handler after the other, in the publisher's task: most handlers only
        # update memory and finish without giving up the event loop, so publishing costs
        # no turn of the loop (gathering them as tasks cost one per event, several ms
        # under load, on every committed change).
        for handler in self.handlers(event.type):
            try:
                await handler(event)
            except Exception as exc:
                self._failed(event, exc)

    def _failed(self, event: Event, exc: BaseException) -> None:
        self.failures["handler"] += 1
        log.error(
            "event handler failed",
            exc_info=exc,
            extra={"event_type": event.type, "event_id": str(event.id)},
        )


#: Published when credentials or roles change (logout, revocation, role change) so that
#: processes drop any cached authentication at once.
CREDENTIALS_CHANGED = "auth.credentials_changed"


def credentials_changed(
    workspace_id: uuid.UUID, reason: str, device_id: uuid.UUID | None = None
) -> Event:
    """``device_id``: the one device whose credentials changed, when it is one device."""
    return Event(
        type=CREDENTIALS_CHANGED,
        workspace_id=workspace_id,
        payload={"reason": reason},
        subject_id=device_id,
    )
