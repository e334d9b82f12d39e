from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. Everything stored is UTC."""
    return datetime.now(UTC)
