"""What each connector declares about its vendor's API, so the console and the API can
show a dying API as such instead of failing silently.

Vendors change: the dates and quotas here are those published at the end of 2026. A
connector past its sunset accepts no new connections and its existing connections stop
syncing with a clear reason (the vendor answers 410 Gone by then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

Auth = Literal["oauth2_pkce", "oauth2", "upload"]
Mode = Literal["poll", "push", "push_or_poll", "upload"]
Lifecycle = Literal["active", "deprecated", "sunset"]


@dataclass(frozen=True, slots=True)
class Quota:
    """A request budget: ``requests`` per ``per_s`` seconds, for the app or per user."""

    requests: int
    per_s: int
    scope: Literal["app", "user"]


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    type: str
    title: str
    vendor: str
    auth: Auth
    mode: Mode
    #: Metric names (see ``integrations.metrics``) the connector syncs: exactly what its
    #: implementation fetches or takes pushed (a test holds them equal), so consent is
    #: only ever asked for data that is brought in.
    data_types: tuple[str, ...]
    #: How far back a first sync may reach (None: as far as the vendor keeps data).
    history_days: int | None
    quotas: tuple[Quota, ...] = ()
    #: From this day the vendor no longer answers (the connector is then ``sunset``).
    sunset: date | None = None
    #: How the switch-off day is known when the vendor gave no exact day ("early
    #: November 2026"; ``sunset`` is then the first day it may be off).
    sunset_text: str | None = None
    #: The day the vendor stopped supporting the API (it may answer for a while still).
    support_ended: date | None = None
    #: Announced as going away, with no day set or no new users taken.
    deprecated: bool = False
    successor: str | None = None
    notes: str = ""
    scopes: tuple[str, ...] = field(default=())

    def lifecycle(self, today: date) -> Lifecycle:
        if self.sunset is not None and today >= self.sunset:
            return "sunset"
        if self.deprecated or self.sunset is not None or self.support_ended is not None:
            return "deprecated"
        return "active"

    def accepts_connections(self, today: date) -> bool:
        return self.auth != "upload" and self.lifecycle(today) == "active"


_ACTIVITY = ("heart_rate", "resting_heart_rate", "steps", "distance", "sleep_duration")

CONNECTORS: dict[str, ConnectorInfo] = {
    c.type: c
    for c in (
        ConnectorInfo(
            "google_health", "Google Health API", "Google", "oauth2_pkce", "push_or_poll",
            (*_ACTIVITY, "spo2", "body_weight", "respiratory_rate"), None,
            notes="Successor of the Fitbit Web API: users consent again with Google; "
            "pages with pageSize/pageToken; webhooks hint at new data.",
        ),
        ConnectorInfo(
            "fitbit", "Fitbit Web API (legacy)", "Fitbit", "oauth2_pkce", "poll",
            _ACTIVITY, None, support_ended=date(2026, 9, 30), sunset=date(2026, 11, 1),
            sunset_text="early November 2026", successor="google_health",
            notes="Support ended 30 Sep 2026 and the API was switched off in early "
            "November 2026 (it answers 410 Gone): move users to Google Health.",
        ),
        ConnectorInfo(
            "google_fit", "Google Fit", "Google", "oauth2_pkce", "poll", _ACTIVITY, None,
            deprecated=True, successor="google_health",
            notes="Deprecated by Google: no new connections; Health Connect on the phone "
            "(upload) or Google Health in the cloud replace it.",
        ),
        ConnectorInfo(
            "oura", "Oura API v2", "Oura", "oauth2_pkce", "push_or_poll",
            ("heart_rate", "steps"), None,
            quotas=(Quota(5000, 300, "user"),),
            notes="Collections by start_date/end_date with next_token; refresh tokens "
            "are single-use; webhook subscriptions expire and are renewed.",
        ),
        ConnectorInfo(
            "withings", "Withings Public API", "Withings", "oauth2_pkce", "push_or_poll",
            ("body_weight", "heart_rate", "systolic_bp", "diastolic_bp", "spo2", "steps",
             "body_temperature"), None,
            quotas=(Quota(120, 60, "app"),),
            notes="Errors come inside HTTP 200 bodies (status ≠ 0); values are value × "
            "10^unit; access tokens last 3 h; a refresh rotates the refresh token (the "
            "old one dies 8 h later); notifications are unsigned hints.",
        ),
        ConnectorInfo(
            "garmin", "Garmin Health API", "Garmin", "oauth2_pkce", "push",
            (*_ACTIVITY, "spo2", "respiratory_rate", "body_weight"), None,
            notes="Partner programme (approval needed); data is pushed, or pinged and "
            "then pulled, to a callback; OAuth 2 with PKCE from 2027.",
        ),
        ConnectorInfo(
            "apple_health", "Apple HealthKit (companion app upload)", "Apple", "upload",
            "upload", tuple(sorted({*_ACTIVITY, "spo2", "body_weight", "respiratory_rate",
                                     "systolic_bp", "diastolic_bp", "body_temperature"})),
            None, notes="No cloud API: a companion app uploads to the device data API, or "
            "an export is uploaded in bulk.",
        ),
        ConnectorInfo(
            "health_connect", "Android Health Connect (companion app upload)", "Google",
            "upload", "upload", (*_ACTIVITY, "spo2", "body_weight"), None,
            notes="On the phone only: a companion app uploads to the device data API, or "
            "an export is uploaded in bulk.",
        ),
    )
}  # fmt: skip


def connector(kind: str) -> ConnectorInfo | None:
    return CONNECTORS.get(kind)


def takes_uploads(kind: str) -> bool:
    """The connector has no cloud API: its data is uploaded (a companion app, exports)."""
    info = CONNECTORS.get(kind)
    return info is not None and info.auth == "upload"
