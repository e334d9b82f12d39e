from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: How precisely "last used" times of credentials are kept: at most one write a minute
#: per credential, however busy it is.
USAGE_RESOLUTION = timedelta(minutes=1)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. Everything stored is UTC."""
    return datetime.now(UTC)


def usage_is_stale(last_used: datetime | None, now: datetime) -> bool:
    return last_used is None or now - last_used >= USAGE_RESOLUTION
