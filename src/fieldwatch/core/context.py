"""Per-request context (request id) carried through logs and audit rows."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("fieldwatch_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()
