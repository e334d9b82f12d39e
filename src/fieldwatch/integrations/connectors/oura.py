"""Oura API v2: OAuth 2 (single-use refresh tokens), the account's ring, heart rate by
datetime range and daily collections by date range, paged with ``next_token``.

A heart-rate page (hundreds of samples) is decoded in C (msgspec: the JSON and the
ISO 8601 times at once) when it holds what Oura sends, numbers and times with their
offsets; anything else takes the general path, which says what is wrong."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar

import httpx
import msgspec

from fieldwatch.integrations.connectors.base import (
    DataPage,
    Sample,
    VendorDevice,
    VendorError,
    checked,
)
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo

HEART_RATE = "/v2/usercollection/heartrate"
DAILY_ACTIVITY = "/v2/usercollection/daily_activity"
RINGS = "/v2/usercollection/ring_configuration"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _when(text: Any) -> datetime:
    value = datetime.fromisoformat(str(text))
    if value.tzinfo is None:
        raise VendorError(502)  # Oura's stamps always carry their offset
    return value


class _Beat(msgspec.Struct):
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    bpm: float | None = None


class _HeartRatePage(msgspec.Struct):
    data: list[_Beat] | None = None
    next_token: str | None = None


_heart_rate_page = msgspec.json.Decoder(_HeartRatePage)


def _heart_rate_samples(answer: httpx.Response) -> DataPage:
    if answer.status_code < 300:
        try:
            page = _heart_rate_page.decode(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # the general path explains
        else:
            samples = [Sample(beat.timestamp, beat.bpm) for beat in page.data or ()]
            return DataPage(samples, page.next_token)
    body = checked(answer)
    samples = [
        Sample(_when(item["timestamp"]), _number(item.get("bpm")))
        for item in body.get("data") or []
    ]
    return DataPage(samples, body.get("next_token"))


class OuraConnector:
    info: ClassVar[ConnectorInfo] = CONNECTORS["oura"]
    auth_base: ClassVar[str] = "https://cloud.ouraring.com"
    api_base: ClassVar[str] = "https://api.ouraring.com"
    authorize_path: ClassVar[str] = "/oauth/authorize"
    token_path: ClassVar[str] = "/oauth/token"
    revoke_path: ClassVar[str | None] = "/oauth/revoke"
    scopes: ClassVar[tuple[str, ...]] = ("personal", "daily", "heartrate", "session", "spo2")
    fetchable: ClassVar[tuple[str, ...]] = ("heart_rate", "steps")

    async def account_id(self, http: httpx.AsyncClient, token: dict[str, Any]) -> str:
        answer = await http.get(
            "/v2/usercollection/personal_info",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        answer.raise_for_status()
        return str(answer.json()["id"])

    async def devices(self, http: httpx.AsyncClient, token: str) -> list[VendorDevice]:
        """The account's rings (Oura answers one configuration per ring set up)."""
        body = checked(await http.get(RINGS, headers=_auth(token)))
        return [
            VendorDevice(
                id=str(ring["id"]), model=ring.get("hardware_type"),
                firmware_version=ring.get("firmware_version"),
                title=f"Oura ring {ring.get('hardware_type') or ''}".strip(),
            )
            for ring in body.get("data") or []
        ]  # fmt: skip

    async def fetch(
        self,
        http: httpx.AsyncClient,
        token: str,
        metric: str,
        start: datetime,
        end: datetime,
        page_token: str | None,
    ) -> DataPage:
        if metric == "heart_rate":
            return await self._heart_rate(http, token, start, end, page_token)
        if metric == "steps":
            return await self._steps(http, token, start, end, page_token)
        raise ValueError(f"Oura: {metric} is not fetched")

    async def _heart_rate(
        self, http: httpx.AsyncClient, token: str, start: datetime, end: datetime,
        page_token: str | None,
    ) -> DataPage:  # fmt: skip
        params = {"start_datetime": start.isoformat(), "end_datetime": end.isoformat()}
        if page_token:
            params["next_token"] = page_token
        return _heart_rate_samples(await http.get(HEART_RATE, params=params,
                                                  headers=_auth(token)))  # fmt: skip

    async def _steps(
        self, http: httpx.AsyncClient, token: str, start: datetime, end: datetime,
        page_token: str | None,
    ) -> DataPage:  # fmt: skip
        """Daily step totals of the days that are over (where they were measured): a
        day still going would be stored once with a partial total."""
        params = {"start_date": start.date().isoformat(), "end_date": end.date().isoformat()}
        if page_token:
            params["next_token"] = page_token
        body = checked(await http.get(DAILY_ACTIVITY, params=params, headers=_auth(token)))
        samples = []
        for item in body.get("data") or []:
            ts = _when(item["timestamp"])
            if date.fromisoformat(str(item["day"])) >= end.astimezone(ts.tzinfo).date():
                continue
            samples.append(Sample(ts, _number(item.get("steps")), str(item.get("id") or "")))
        return DataPage(samples, body.get("next_token"))


def _number(raw: Any) -> float | None:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
