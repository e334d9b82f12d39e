"""The device page's health export part over HTTP: shown for devices fed by uploads
only, the upload form (htmx and plain), the run it started followed to its end, and
refusals shown in the form."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import httpx

from conftest import Actor, create_device
from console_helpers import csrf_of, sign_in_http
from export_helpers import BILLION_LAUGHS, apple_xml, record, values
from fieldwatch.runtime import Runtime

WHEN = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=0) - timedelta(days=1)
EXPORT = apple_xml([
    record("HKQuantityTypeIdentifierHeartRate", WHEN, "61", "count/min"),
    record("HKQuantityTypeIdentifierBodyMass", WHEN, "176.4", "lb"),
])  # fmt: skip


def flat(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def _post(client: httpx.AsyncClient, device: str, token: str, data: bytes,
                htmx: bool = True) -> httpx.Response:  # fmt: skip
    headers = {"HX-Request": "true"} if htmx else {}
    return await client.post(f"/console/devices/{device}/health-export", headers=headers,
                             data={"csrf_token": token},
                             files={"file": ("export.xml", data, "text/xml")})  # fmt: skip


async def test_upload_from_the_device_page_and_follow_the_run(
    client: httpx.AsyncClient, operator: Actor, runtime: Runtime
) -> None:
    phone = (
        await create_device(client, operator, name="Ana's iPhone", type="apple_health_iphone")
    )["id"]
    sensor = (await create_device(client, operator, name="Boiler", type="sensor"))["id"]
    await sign_in_http(client, operator.email)
    page = await client.get(f"/console/devices/{phone}")
    assert f'hx-get="/console/devices/{phone}/health-export"' in page.text
    other = await client.get(f"/console/devices/{sensor}")
    assert "health-export" not in other.text
    part = await client.get(f"/console/devices/{phone}/health-export")
    assert "No export uploaded yet" in part.text and 'accept=".zip,.xml"' in part.text
    token = csrf_of(part.text)

    sent = await _post(client, phone, token, EXPORT)
    assert sent.status_code == 202, sent.text
    assert "Export export.xml uploaded" in flat(sent.text)
    assert 'data-status="queued"' in sent.text and 'hx-trigger="every 2s"' in sent.text
    await runtime.sync.run_once()
    after = await client.get(f"/console/devices/{phone}/health-export")
    assert 'data-status="completed"' in after.text and 'hx-trigger="every 2s"' not in after.text
    assert "bulk completed 2 2 0" in flat(after.text).replace("  ", " ")
    assert [v[1:] for v in await values(client, operator, phone, "body_weight")] == [
        (80.0137, "kg")
    ]

    refused = await _post(client, phone, token, apple_xml([], dtd=BILLION_LAUGHS))
    assert refused.status_code == 422 and "declares entities" in refused.text
    plain = await _post(client, phone, token, EXPORT, htmx=False)
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/console/devices/{phone}#health-export"
    forged = await _post(client, phone, "forged", EXPORT)
    assert forged.status_code == 403
    none = await _post(client, sensor, token, EXPORT)
    assert none.status_code == 404


async def test_a_viewer_sees_the_runs_without_the_form(
    client: httpx.AsyncClient, operator: Actor, viewer: Actor
) -> None:
    phone = (await create_device(client, operator, name="Phone", type="health_connect_phone"))["id"]
    await sign_in_http(client, viewer.email)
    part = await client.get(f"/console/devices/{phone}/health-export")
    assert part.status_code == 200 and "No export uploaded yet" in part.text
    assert "<form" not in part.text
    page = await client.get(f"/console/devices/{phone}")
    refused = await _post(client, phone, csrf_of(page.text), EXPORT)
    assert refused.status_code == 403
