"""Withings Notify, the vendor's side: a subscription per account (the user's bearer
token) and ``appli`` (a family of data), ``action=subscribe`` with the ``callbackurl``,
``action=revoke`` to end it. Withings first checks the callback answers (HEAD, then
GET); notifications are unsigned form posts (``userid``, ``appli``, ``startdate``,
``enddate``), so they are only hints: the sync asks Withings for the data itself."""

from __future__ import annotations

import httpx

from fieldwatch.integrations.connectors.withings import body_of

NOTIFY = "/notify"
#: The ``appli`` families and the metrics they concern.
APPLI: dict[int, tuple[str, ...]] = {
    1: ("body_weight",),
    2: ("body_temperature",),
    4: ("systolic_bp", "diastolic_bp", "heart_rate", "spo2"),
    16: ("steps",),
}


def topic(appli: int) -> str:
    return f"appli:{appli}"


def appli_of(topic_: str) -> int:
    return int(topic_.removeprefix("appli:"))


def wanted(consent: list[str]) -> list[int]:
    """The families the account holder consented to share any metric of."""
    return [a for a, metrics in APPLI.items() if set(metrics) & set(consent)]


async def subscribe(http: httpx.AsyncClient, token: str, callback_url: str, appli: int) -> None:
    form = {"action": "subscribe", "callbackurl": callback_url, "appli": str(appli),
            "comment": "Fieldwatch"}  # fmt: skip
    body_of(await http.post(NOTIFY, data=form, headers={"Authorization": f"Bearer {token}"}))


async def revoke(http: httpx.AsyncClient, token: str, callback_url: str, appli: int) -> None:
    form = {"action": "revoke", "callbackurl": callback_url, "appli": str(appli)}
    body_of(await http.post(NOTIFY, data=form, headers={"Authorization": f"Bearer {token}"}))
