"""Commands with a shape of their own: how another domain extends the ledger without
the ledger knowing it.

A domain whose work travels as a ledger command (firmware: ``firmware_update``)
registers a ``CommandKind`` for its command name with the dispatcher when the runtime
is built (``CommandDispatcher.register``). The ledger then asks it for the message a
device receives (instead of the generic ``command`` message) and tells it, inside the
same transaction, about every change of the command's status, so the domain's own state
follows the ledger's (delivered, acknowledged, expired, cancelled, failed).

Transports send such a message as ``frame`` (the WebSocket frame type; MQTT maps it to
its topic) instead of a ``command``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fieldwatch.commands.models import Command
    from fieldwatch.db.uow import UnitOfWork

#: The kind of message a generic command goes out as.
COMMAND_FRAME = "command"


class CommandKind(Protocol):
    #: What transports send the message as (a WebSocket frame type, an MQTT topic kind).
    frame: str

    async def message(self, command: Command) -> dict[str, Any]:
        """The message the device receives, built at send time (after the send's commit)."""
        ...

    async def changed(self, uow: UnitOfWork, command: Command, previous: str | None) -> None:
        """The ledger changed the command's status (in ``uow``, not yet committed)."""
        ...
