from __future__ import annotations

from fieldwatch.core.errors import Conflict, NotFound


class CommandNotFound(NotFound):
    slug, title = "command-not-found", "Command not found"


class CommandFinished(Conflict):
    slug, title = "command-finished", "Command already finished"


class IdempotencyConflict(Conflict):
    slug, title = "idempotency-key-reused", "Idempotency key reused with another command"
