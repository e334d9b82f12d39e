"""Google Health API notifications, the vendor's side.

A subscriber (the endpoint URL, the data types, an ``endpointAuthorization`` secret) is
registered in the Google Cloud project by hand (``projects.subscribers.create`` needs
the project's own credentials, not a user's grant). Google checks the endpoint with two
POSTs of ``{"type": "verification"}``: with ``Authorization`` set to the secret (answer
201) and without it (answer 401). Notifications are a JSON array of 1 to 99
``{"data": {healthUserId, operation, dataType, intervals}}``: ``operation`` is
``UPSERT`` (data was added or changed in those intervals) or ``DELETE`` (data was
removed there); each interval has its ``physicalTimeInterval`` (``startTime``,
``endTime``, RFC 3339).

Google signs the body of each request (``google_signature``): that signature is what
makes a notification authentic. The secret (compared in constant time) answers the
endpoint check; with a notification it must be right where Google sends it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fieldwatch.integrations.connectors.google_health import DATA_TYPES, DataType, _instant

#: Google's data type (kebab-case) → Fieldwatch's metric and how it is read.
METRICS: dict[str, tuple[str, DataType]] = {kind.path: (metric, kind)
                                            for metric, kind in DATA_TYPES.items()}  # fmt: skip
OPERATIONS = ("UPSERT", "DELETE")


@dataclass(frozen=True, slots=True)
class Change:
    user_id: str
    operation: str
    metric: str
    #: Where the readings Fieldwatch stored for it lie: [start, end).
    windows: list[tuple[datetime, datetime]]


def authorised(secret: str | None, header: str | None) -> bool:
    """The ``Authorization`` header is the configured secret (as is, or after
    ``Bearer``)."""
    if not secret or not header:
        return False
    given = header.encode()
    return hmac.compare_digest(given, secret.encode()) or hmac.compare_digest(
        given, f"Bearer {secret}".encode()
    )


def is_verification(body: Any) -> bool:
    return isinstance(body, dict) and body.get("type") == "verification"


def _window(kind: DataType, interval: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """Where the readings of ``interval`` were stored: at a sample's time or an
    interval's start (both inside it), a daily record at 00:00 UTC of its civil day."""
    try:
        physical = interval["physicalTimeInterval"]
        start, end = _instant(physical["startTime"]), _instant(physical["endTime"])
    except (KeyError, TypeError, ValueError):
        return None
    if kind.record == "daily":
        first = datetime.combine(start.astimezone(UTC).date(), datetime.min.time(), UTC)
        return first, max(end, first + timedelta(days=1))
    return start, end if end > start else start + timedelta(microseconds=1)


def changes(body: Any) -> list[Change]:
    """The notifications of a delivery that concern a metric Fieldwatch syncs (others
    are ignored); ``ValueError`` for what is not a delivery."""
    if not isinstance(body, list):
        raise ValueError("not a JSON array of notifications")
    out = []
    for item in body:
        data = item.get("data") if isinstance(item, dict) else None
        if not isinstance(data, dict) or not data.get("healthUserId"):
            raise ValueError("a notification without data.healthUserId")
        found = METRICS.get(str(data.get("dataType") or ""))
        operation = str(data.get("operation") or "")
        if found is None or operation not in OPERATIONS:
            continue
        metric, kind = found
        windows = [w for w in (_window(kind, i) for i in data.get("intervals") or []
                               if isinstance(i, dict)) if w is not None]  # fmt: skip
        out.append(Change(str(data["healthUserId"]), operation, metric, windows))
    return out
