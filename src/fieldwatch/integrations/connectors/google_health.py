"""Google Health API (v4, the successor of the Fitbit Web API): Google OAuth 2 with
PKCE and offline access (a refresh token; Google keeps it across refreshes and answers
``invalid_grant`` once the user revoked it), the account's identity and its data points.

Data points are read per data type from ``/v4/users/me/dataTypes/{type}/dataPoints``,
filtered on a time range (an AIP-160 ``filter``: ``…sample_time.physical_time`` for
samples, ``…interval.start_time`` for intervals and sessions, ``….date`` for daily
records) and paged with ``pageSize``/``pageToken``/``nextPageToken``. Each kind of
record gives its time differently: a sample its ``sampleTime`` (``physicalTime`` and
the user's ``utcOffset``), an interval or a session its ``interval`` (stored at its
start, with ``startUtcOffset``), a daily record its civil ``date`` (stored at the start
of that day, UTC; only days that are over, a day still going has no final value).
Identifiable data points carry a ``name`` (``users/…/dataPoints/…``): the vendor's
record id. Errors are HTTP statuses (429 with ``Retry-After``, 401 for a token Google
no longer takes). The shape follows Google's published reference as of late 2026; the
base addresses are settings (``FIELDWATCH_GOOGLE_HEALTH__API_URL``…).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, ClassVar, Literal

import httpx

from fieldwatch.integrations.connectors.base import (
    DataPage,
    Sample,
    VendorDevice,
    VendorError,
    checked,
)
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo

IDENTITY = "/v4/users/me/identity"
SCOPE = "https://www.googleapis.com/auth/googlehealth."
PAGE_SIZE = 1440  # a day of minutes (Google's default); sessions are capped at 25
SESSION_PAGE_SIZE = 25

Record = Literal["sample", "interval", "session", "daily"]


def _number(raw: Any) -> float | None:
    """A JSON number, or an int64 sent as a string (Google's JSON mapping)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def _scaled(key: str, factor: float) -> Callable[[dict[str, Any]], float | None]:
    def value(data: dict[str, Any]) -> float | None:
        raw = _number(data.get(key))
        return round(raw * factor, 6) if raw is not None else None

    return value


def _sleep_minutes(data: dict[str, Any]) -> float | None:
    """Minutes asleep from the session's summary, else the session's length."""
    asleep = _number((data.get("summary") or {}).get("minutesAsleep"))
    if asleep is not None:
        return asleep
    interval = data.get("interval") or {}
    try:
        start, end = _instant(interval["startTime"]), _instant(interval["endTime"])
    except (KeyError, TypeError, ValueError):
        return None
    return round((end - start).total_seconds() / 60, 2)


@dataclass(frozen=True, slots=True)
class DataType:
    """How one of Fieldwatch's metrics is read from Google Health."""

    path: str  # the dataType in the address (``heart-rate``)
    field: str  # the data point's member holding it (``heartRate``)
    record: Record
    value: Callable[[dict[str, Any]], float | None]

    @property
    def filter_field(self) -> str:  # ``heart_rate``: the filter's name of the type
        return self.path.replace("-", "_")

    def filter(self, start: datetime, end: datetime) -> str:
        if self.record == "daily":
            key, low, high = f"{self.filter_field}.date", start.date(), end.date()
            return f'{key} >= "{low.isoformat()}" AND {key} < "{high.isoformat()}"'
        where = "sample_time.physical_time" if self.record == "sample" else "interval.start_time"
        key = f"{self.filter_field}.{where}"
        return f'{key} >= "{_rfc3339(start)}" AND {key} < "{_rfc3339(end)}"'


DATA_TYPES: dict[str, DataType] = {
    "heart_rate": DataType("heart-rate", "heartRate", "sample", _scaled("beatsPerMinute", 1)),
    "resting_heart_rate": DataType("daily-resting-heart-rate", "dailyRestingHeartRate",
                                   "daily", _scaled("beatsPerMinute", 1)),
    "steps": DataType("steps", "steps", "interval", _scaled("count", 1)),
    "distance": DataType("distance", "distance", "interval", _scaled("millimeters", 0.001)),
    "sleep_duration": DataType("sleep", "sleep", "session", _sleep_minutes),
    "spo2": DataType("oxygen-saturation", "oxygenSaturation", "sample",
                     _scaled("percentage", 1)),
    "body_weight": DataType("weight", "weight", "sample", _scaled("weightGrams", 0.001)),
    "respiratory_rate": DataType("daily-respiratory-rate", "dailyRespiratoryRate", "daily",
                                 _scaled("breathsPerMinute", 1)),
}  # fmt: skip

_FRACTION = re.compile(r"(\.\d{6})\d+")


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _instant(text: Any) -> datetime:
    """An RFC 3339 timestamp (Google sends up to nanoseconds and ``Z``)."""
    value = datetime.fromisoformat(_FRACTION.sub(r"\1", str(text)))
    if value.tzinfo is None:
        raise ValueError("a timestamp without its offset")
    return value


def _offset(raw: Any) -> timezone:
    """A protobuf Duration in JSON (``"3600s"``, ``"-18000s"``) as a UTC offset."""
    try:
        seconds = float(str(raw).removesuffix("s")) if raw is not None else 0.0
        return timezone(timedelta(seconds=round(seconds / 60) * 60))
    except ValueError:
        return UTC


def _when(kind: DataType, data: dict[str, Any]) -> datetime | None:
    """When a record was measured, at the user's offset (None: not a usable record)."""
    try:
        if kind.record == "sample":
            sample = data["sampleTime"]
            return _instant(sample["physicalTime"]).astimezone(_offset(sample.get("utcOffset")))
        if kind.record == "daily":
            day = data["date"]
            return datetime.combine(date(int(day["year"]), int(day["month"]), int(day["day"])),
                                    time(), UTC)  # fmt: skip
        interval = data["interval"]
        zone = _offset(interval.get("startUtcOffset"))
        return _instant(interval["startTime"]).astimezone(zone)
    except (KeyError, TypeError, ValueError):
        return None


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class GoogleHealthConnector:
    info: ClassVar[ConnectorInfo] = CONNECTORS["google_health"]
    auth_base: ClassVar[str] = "https://accounts.google.com"
    api_base: ClassVar[str] = "https://health.googleapis.com"
    #: Google's token and revocation endpoints are on a host of their own.
    token_base: ClassVar[str] = "https://oauth2.googleapis.com"
    authorize_path: ClassVar[str] = "/o/oauth2/v2/auth"
    token_path: ClassVar[str] = "/token"
    revoke_path: ClassVar[str | None] = "/revoke"
    scopes: ClassVar[tuple[str, ...]] = tuple(
        f"{SCOPE}{s}.readonly"
        for s in ("activity_and_fitness", "health_metrics_and_measurements", "sleep")
    )
    #: A refresh token (offline access), and the consent page shown again so that a
    #: user who consented before gets one too.
    authorize_params: ClassVar[dict[str, str]] = {"access_type": "offline",
                                                   "prompt": "consent"}  # fmt: skip
    token_auth_method: ClassVar[str] = "client_secret_post"
    fetchable: ClassVar[tuple[str, ...]] = tuple(DATA_TYPES)

    async def account_id(self, http: httpx.AsyncClient, token: dict[str, Any]) -> str:
        answer = await http.get(IDENTITY, headers=_auth(str(token["access_token"])))
        answer.raise_for_status()
        user = answer.json().get("healthUserId")
        if not user:
            raise VendorError(502)
        return str(user)

    async def devices(self, http: httpx.AsyncClient, token: str) -> list[VendorDevice]:
        """Google Health keeps the account's data, merged from all its trackers and
        apps: the account is the one device to import."""
        body = checked(await http.get(IDENTITY, headers=_auth(token)))
        user = body.get("healthUserId")
        if not user:
            raise VendorError(502)
        return [VendorDevice(id=str(user), model=None, firmware_version=None,
                             title="Google Health account", kind="account")]  # fmt: skip

    async def fetch(
        self,
        http: httpx.AsyncClient,
        token: str,
        metric: str,
        start: datetime,
        end: datetime,
        page_token: str | None,
    ) -> DataPage:
        kind = DATA_TYPES.get(metric)
        if kind is None:
            raise ValueError(f"Google Health: {metric} is not fetched")
        size = SESSION_PAGE_SIZE if kind.record == "session" else PAGE_SIZE
        params: dict[str, str | int] = {"filter": kind.filter(start, end), "pageSize": size}
        if page_token:
            params["pageToken"] = page_token
        path = f"/v4/users/me/dataTypes/{kind.path}/dataPoints"
        body = checked(await http.get(path, params=params, headers=_auth(token)))
        samples = []
        for point in body.get("dataPoints") or []:
            data = point.get(kind.field) if isinstance(point, dict) else None
            ts = _when(kind, data) if isinstance(data, dict) else None
            if ts is None or not isinstance(data, dict):
                continue
            if kind.record == "daily" and ts.date() >= end.astimezone(UTC).date():
                continue  # the day is not over: its value is not final
            samples.append(Sample(ts, kind.value(data), point.get("name") or None))
        samples.sort(key=lambda s: s.ts)
        return DataPage(samples, body.get("nextPageToken") or None)


__all__ = ["DATA_TYPES", "GoogleHealthConnector"]
