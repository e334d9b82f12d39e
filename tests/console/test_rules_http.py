"""The console's alert rules pages over HTTP: list, create, edit, delete; the API's field
errors shown next to their fields; the built-in offline rule; roles and CSRF."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

import httpx

from conftest import Actor, Factory, create_device
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in


async def api_rules(client: httpx.AsyncClient, actor: Actor) -> dict[str, dict[str, Any]]:
    r = await client.get("/api/v1/alert-rules", headers=actor.headers)
    assert r.status_code == 200, r.text
    return {rule["name"]: rule for rule in r.json()["items"]}


def field_error(html: str, name: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="e-{name}">([^<]+)</p>', html)
    return html_lib.unescape(found.group(1)) if found else None


FORM = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": "30",
        "duration_s": "120", "severity": "critical", "scope": "device_type",
        "scope_value": "boiler", "enabled": "on"}  # fmt: skip


async def test_create_edit_and_delete_a_rule(client, operator: Actor):
    await sign_in(client, operator.email)
    page = await client.get("/console/alert-rules")
    assert page.status_code == 200 and 'aria-current="page">Alert rules<' in page.text
    assert "Device offline" in page.text and "device goes offline" in page.text  # built in
    csrf = csrf_of(page.text)

    r = await client.post("/console/alert-rules", data={**FORM, "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/alert-rules?done=created"
    rule = (await api_rules(client, operator))["Too hot"]
    assert (rule["metric"], rule["operator"], rule["threshold"]) == ("temperature", ">", 30)
    assert (rule["duration_s"], rule["severity"], rule["enabled"]) == (120, "critical", True)
    assert (rule["scope"], rule["scope_value"]) == ("device_type", "boiler")
    page = await client.get(r.headers["location"])
    assert "The rule is created." in page.text
    row = re.search(rf'<tr id="rule-{rule["id"]}">(.*?)</tr>', page.text, re.S)
    assert row and "temperature &gt; 30" in row.group(1) and "120 s" in row.group(1)
    assert "Type boiler" in row.group(1)

    # Edit: the form holds the rule's values; saving changes them.
    edit = await client.get(f"/console/alert-rules/{rule['id']}")
    assert 'id="r-threshold" name="threshold" inputmode="decimal" value="30"' in edit.text
    assert 'id="r-duration_s" name="duration_s" type="number"' in edit.text
    changed = {**FORM, "threshold": "35.5", "scope": "all", "scope_value": "", "csrf_token": csrf}
    changed.pop("enabled")  # unticked: disabled
    r = await client.post(f"/console/alert-rules/{rule['id']}", data=changed)
    assert r.status_code == 303 and r.headers["location"].endswith("done=updated")
    rule = (await api_rules(client, operator))["Too hot"]
    assert (rule["threshold"], rule["scope"], rule["scope_value"]) == (35.5, "all", None)
    assert rule["enabled"] is False

    r = await client.post(f"/console/alert-rules/{rule['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"].endswith("done=deleted")
    assert list(await api_rules(client, operator)) == ["Device offline"]
    r = await client.get(f"/console/alert-rules/{rule['id']}")
    assert r.status_code == 404 and "alert rule" in r.text.lower()


async def test_field_errors_are_shown_next_to_their_fields(client, operator: Actor):
    await sign_in(client, operator.email)
    csrf = csrf_of((await client.get("/console/alert-rules")).text)
    bad = {**FORM, "name": "", "threshold": "hot", "duration_s": "-5", "scope": "device",
           "scope_value": "pump-7", "csrf_token": csrf}  # fmt: skip
    r = await client.post("/console/alert-rules", data=bad)
    assert r.status_code == 422
    assert field_error(r.text, "name") == "String should have at least 1 character"
    assert (
        field_error(r.text, "threshold")
        == "Input should be a valid number, unable to parse string as a number"
    )
    assert field_error(r.text, "duration_s") == "Input should be greater than or equal to 0"
    assert field_error(r.text, "metric") is None
    assert 'aria-describedby="e-threshold" aria-invalid="true"' in r.text
    assert "Check the highlighted fields." in r.text
    # What was typed stays in the form.
    assert 'name="threshold" inputmode="decimal" value="hot"' in r.text
    assert list(await api_rules(client, operator)) == ["Device offline"]

    # The scope's own check, on its field.
    bad = {**FORM, "scope": "device", "scope_value": "pump-7", "csrf_token": csrf}
    r = await client.post("/console/alert-rules", data=bad)
    assert r.status_code == 422
    assert field_error(r.text, "scope_value") == "scope 'device' needs a device id (a UUID)"

    # Editing: the same checks, and nothing of a refused change is kept.
    rule = (await api_rules(client, operator))["Device offline"]
    offline = {"name": "Offline", "severity": "minor", "scope": "device_type", "scope_value": "",
               "enabled": "on", "csrf_token": csrf}  # fmt: skip
    r = await client.post(f"/console/alert-rules/{rule['id']}", data=offline)
    assert r.status_code == 422
    assert field_error(r.text, "scope_value") == "scope 'device_type' needs a scope_value"
    assert 'id="r-metric"' not in r.text  # the offline rule has no metric
    assert (await api_rules(client, operator))["Device offline"]["severity"] == "major"
    r = await client.post(f"/console/alert-rules/{rule['id']}", data={**offline,
                          "scope": "all", "name": "Offline"})  # fmt: skip
    assert r.status_code == 303
    assert (await api_rules(client, operator))["Offline"]["severity"] == "minor"


async def test_a_device_scoped_rule_names_its_device(client, operator: Actor, factory: Factory):
    device = await create_device(client, operator, name="Pump 7")
    await sign_in(client, operator.email)
    csrf = csrf_of((await client.get("/console/alert-rules")).text)
    body = {**FORM, "scope": "device", "scope_value": device["id"], "csrf_token": csrf}
    assert (await client.post("/console/alert-rules", data=body)).status_code == 303
    page = await client.get("/console/alert-rules")
    assert f'Device <a href="/console/devices/{device["id"]}">Pump 7</a>' in page.text
    # Another workspace's rule is a 404 page.
    stranger = await factory.user("operator", "globex")
    theirs = (await api_rules(client, stranger))["Device offline"]
    r = await client.get(f"/console/alert-rules/{theirs['id']}")
    assert r.status_code == 404
    r = await client.post(f"/console/alert-rules/{theirs['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 404


async def test_a_viewer_reads_only_and_writes_need_csrf(client, operator: Actor, viewer: Actor):
    await sign_in(client, viewer.email)
    page = await client.get("/console/alert-rules")
    assert page.status_code == 200 and "Device offline" in page.text
    assert "New rule" not in page.text and 'name="metric"' not in page.text
    offline = (await api_rules(client, viewer))["Device offline"]
    view = await client.get(f"/console/alert-rules/{offline['id']}")
    assert view.status_code == 200 and "Save rule" not in view.text and ">View<" in page.text
    csrf = csrf_of(page.text)
    r = await client.post("/console/alert-rules", data={**FORM, "csrf_token": csrf})
    assert r.status_code == 403 and "operator" in r.text
    r = await client.post(
        f"/console/alert-rules/{offline['id']}", data={**FORM, "csrf_token": csrf}
    )
    assert r.status_code == 403
    assert list(await api_rules(client, operator)) == ["Device offline"]

    client.cookies.clear()
    await sign_in(client, operator.email)
    r = await client.post("/console/alert-rules", data=FORM)
    assert r.status_code == 403 and "Reload the page" in r.text
    r = await client.post(f"/console/alert-rules/{offline['id']}/delete")
    assert r.status_code == 403
    assert list(await api_rules(client, operator)) == ["Device offline"]
