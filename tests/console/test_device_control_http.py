"""The device page's control section over HTTP: sending, listing, paging and cancelling
commands, the desired configuration edited and compared with the reported one, readable
messages for wrong fields, and the refusals (viewers, missing CSRF token, another
workspace's device)."""

from __future__ import annotations

import re
import uuid
from html import unescape as html_unescape

import httpx

from conftest import Actor, Factory, create_device
from console_helpers import csrf_of, sign_in_http
from fieldwatch.commands.config import ConfigService
from fieldwatch.runtime import Runtime

HTMX = {"HX-Request": "true"}


async def signed_in(client: httpx.AsyncClient, actor: Actor) -> dict[str, str]:
    """Sign in; the headers of an htmx request of the console (with the CSRF token)."""
    assert (await sign_in_http(client, actor.email)).status_code == 303
    page = await client.get("/console/")
    return {**HTMX, "X-CSRF-Token": csrf_of(page.text)}


def base(device: dict) -> str:
    return f"/console/devices/{device['id']}/control"


def states(html: str) -> list[tuple[str, str]]:
    """(command, state) of each row of the commands table, top to bottom."""
    rows = re.findall(
        r'<tr id="cmd-[^"]+" data-status="(\w+)">\s*<th scope="row">\s*<code[^>]*>([^<]+)</code>',
        html,
    )
    return [(name, status) for status, name in rows]


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<p id="control-{field}-error" class="field-error">([^<]+)</p>', html)
    assert found, html
    return html_unescape(found.group(1))


async def api_commands(client: httpx.AsyncClient, actor: Actor, device: dict) -> list[dict]:
    r = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_an_operator_sends_a_command_and_sees_it_listed(client, operator: Actor):
    device = await create_device(client, operator)
    headers = await signed_in(client, operator)
    section = await client.get(base(device), headers=HTMX)
    assert section.status_code == 200 and "<html" not in section.text
    assert 'id="h-control"' in section.text and 'hx-post="' in section.text
    assert 'for="control-command"' in section.text and 'for="control-params"' in section.text
    assert "No commands have been sent to this device." in section.text

    form = {"command": "set_interval", "params": '{"interval": 30}', "ttl_s": "600"}
    r = await client.post(base(device) + "/commands", data=form, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["hx-trigger"] == '{"control:commands": true}'
    assert "is queued: the device is not connected here" in r.text
    assert 'value="set_interval"' in r.text  # the form keeps its values for the next one
    [stored] = await api_commands(client, operator, device)
    assert (stored["command"], stored["params"], stored["ttl_s"]) == (
        "set_interval", {"interval": 30}, 600,
    )  # fmt: skip
    assert stored["status"] == "pending" and stored["created_by"].endswith(operator.email)

    listed = await client.get(base(device) + "/commands", headers=HTMX)
    assert states(listed.text) == [("set_interval", "pending")]
    assert "{&#34;interval&#34;: 30}" in listed.text
    assert f'datetime="{stored["created_at"].replace("Z", "+00:00")}" data-local' in listed.text


async def test_a_repeated_form_sends_one_command(client, operator: Actor):
    device = await create_device(client, operator)
    headers = await signed_in(client, operator)
    form = {"command": "reboot", "params": "{}", "ttl_s": "60", "idempotency_key": "k-1"}
    first = await client.post(base(device) + "/commands", data=form, headers=headers)
    again = await client.post(base(device) + "/commands", data=form, headers=headers)
    assert first.status_code == again.status_code == 200
    assert "This form had been sent already" in again.text
    assert len(await api_commands(client, operator, device)) == 1


async def test_wrong_fields_are_explained_next_to_each_field(client, operator: Actor):
    device = await create_device(client, operator)
    headers = await signed_in(client, operator)
    url = base(device) + "/commands"
    form = {"command": "two words", "params": '{"interval": 30,}', "ttl_s": "0"}
    r = await client.post(url, data=form, headers=headers)
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "The command was not sent: see the messages next to the fields." in r.text
    assert 'id="control-send-fields" class="fields" hx-swap-oob="true"' in r.text
    assert 'id="control-sent" hx-swap-oob="delete"' in r.text  # the last notice
    assert field_error(r.text, "params") == (
        "Not valid JSON: Expecting property name enclosed in double quotes (line 1, column 17)."
    )
    assert "no spaces" in field_error(r.text, "command")
    assert field_error(r.text, "ttl").startswith("Enter a whole number of seconds from 1")
    assert 'aria-invalid="true"' in r.text and "{&#34;interval&#34;: 30,}" in r.text

    r = await client.post(url, data={"command": "go", "params": "[1, 2]"}, headers=headers)
    assert r.status_code == 422
    assert field_error(r.text, "params").startswith("This must be a JSON object in braces")
    assert "control-command-error" not in r.text
    r = await client.post(url, data={"command": "go", "params": '{"x": NaN}'}, headers=headers)
    assert field_error(r.text, "params") == "Not valid JSON: NaN is not a JSON number."
    for ttl in ("²", "9" * 5000, "-5", "2592001"):
        r = await client.post(url, data={"command": "go", "ttl_s": ttl}, headers=headers)
        assert r.status_code == 422, ttl
        assert field_error(r.text, "ttl").startswith("Enter a whole number of seconds"), ttl
    assert await api_commands(client, operator, device) == []


async def test_the_list_is_newest_first_and_paged(client, operator: Actor):
    device = await create_device(client, operator)
    for n in range(23):
        body = {"command": f"step{n:02d}"}
        r = await client.post(
            f"/api/v1/devices/{device['id']}/commands", json=body, headers=operator.headers
        )
        assert r.status_code == 201
    await signed_in(client, operator)
    first = await client.get(base(device) + "/commands", headers=HTMX)
    names = [n for n, _ in states(first.text)]
    assert names == [f"step{n:02d}" for n in range(22, 2, -1)]
    assert "newest first: 1–20 of 23" in first.text
    assert "?offset=20" in first.text and "Newer commands" not in first.text
    second = await client.get(base(device) + "/commands?offset=20", headers=HTMX)
    assert [n for n, _ in states(second.text)] == ["step02", "step01", "step00"]
    assert "21–23 of 23" in second.text and "?offset=0" in second.text
    assert "Older commands" not in second.text


async def test_cancel_and_a_refused_cancel(client, operator: Actor):
    device = await create_device(client, operator)
    headers = await signed_in(client, operator)
    r = await client.post(
        f"/api/v1/devices/{device['id']}/commands", json={"command": "reboot"},
        headers=operator.headers,
    )  # fmt: skip
    command_id = r.json()["command_id"]
    listed = await client.get(base(device) + "/commands", headers=HTMX)
    assert f'id="cancel-{command_id}"' in listed.text
    url = f"{base(device)}/commands/{command_id}/cancel"
    r = await client.post(url, headers=headers)
    assert r.status_code == 200, r.text
    assert states(r.text) == [("reboot", "cancelled")] and "cancel-" not in r.text
    assert (await api_commands(client, operator, device))[0]["status"] == "cancelled"
    # Too late: the service's refusal, as a fragment shown in the row.
    r = await client.post(url, headers=headers)
    assert r.status_code == 409 and r.text.lstrip().startswith('<div class="problem"')
    assert f"Command {command_id} is already cancelled" in r.text
    # Another device's command is not found through this device.
    other = await create_device(client, operator)
    r = await client.post(f"{base(other)}/commands/{command_id}/cancel", headers=headers)
    assert r.status_code == 404


async def test_the_desired_configuration_is_edited_and_compared(
    client, runtime: Runtime, operator: Actor
):
    device = await create_device(client, operator)
    headers = await signed_in(client, operator)
    section = (await client.get(base(device), headers=HTMX)).text
    assert "No desired configuration has been set for this device." in section
    assert 'for="control-desired"' in section

    url = base(device) + "/config"
    first = '{"interval": 30, "led": {"color": "green", "on": true}}'
    r = await client.post(url, data={"desired": first}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["hx-trigger"] == '{"control:config": true}'
    assert "Saved as version 1" in r.text
    view = (await client.get(url, headers=HTMX)).text
    assert "<strong>Pending:</strong> version 1 is desired" in view
    assert "has not reported any" in view
    assert changes(view) == {"interval": "added", "led": "added"}

    async with runtime.uow() as uow:  # the device reports version 1 applied
        assert await ConfigService(uow).applied(uuid.UUID(device["id"]), 1) is not None
        await uow.commit()
    view = (await client.get(url, headers=HTMX)).text
    assert "<strong>Applied:</strong> the device reports version 1" in view
    assert changes(view) == {"interval": "same", "led.color": "same", "led.on": "same"}

    second = '{"interval": 60, "led": {"color": "green"}, "mode": "eco"}'
    r = await client.post(url, data={"desired": second}, headers=headers)
    assert "Saved as version 2" in r.text
    view = (await client.get(url, headers=HTMX)).text
    assert "version 2 is desired" in view and "reports version 1" in view
    assert changes(view) == {
        "interval": "changed", "led.color": "same", "led.on": "removed", "mode": "added",
    }  # fmt: skip
    assert "removed: still on the device" in view and "<code>60</code>" in view
    r = await client.post(url, data={"desired": second}, headers=headers)
    assert "No change: the desired configuration already was this (version 2)" in r.text
    api = await client.get(f"/api/v1/devices/{device['id']}/config", headers=operator.headers)
    assert api.json()["desired"] == {"interval": 60, "led": {"color": "green"}, "mode": "eco"}


def changes(html: str) -> dict[str, str]:
    rows = re.findall(r'data-change="(\w+)">\s*<th scope="row"><code>([^<]+)</code>', html)
    return {path: change for change, path in rows}


async def test_invalid_configuration_json_is_explained_next_to_it(client, operator: Actor):
    device = await create_device(client, operator)
    headers = await signed_in(client, operator)
    url = base(device) + "/config"
    r = await client.post(
        url, data={"desired": '{\n  "interval": 30\n  "mode": 1\n}'}, headers=headers
    )
    assert r.status_code == 422
    assert "The desired configuration was not saved" in r.text
    assert field_error(r.text, "desired") == (
        "Not valid JSON: Expecting ',' delimiter (line 3, column 3)."
    )
    assert 'id="control-config-fields" class="field wide" hx-swap-oob="true"' in r.text
    assert 'id="control-config-saved" hx-swap-oob="delete"' in r.text  # the last notice
    r = await client.post(url, data={"desired": '"just text"'}, headers=headers)
    assert field_error(r.text, "desired").startswith("This must be a JSON object")
    api = await client.get(f"/api/v1/devices/{device['id']}/config", headers=operator.headers)
    assert api.json()["desired_version"] == 0


async def test_a_viewer_sees_no_controls_and_a_forged_write_is_refused(
    client, operator: Actor, viewer: Actor
):
    device = await create_device(client, operator)
    r = await client.post(
        f"/api/v1/devices/{device['id']}/commands", json={"command": "reboot"},
        headers=operator.headers,
    )  # fmt: skip
    command_id = r.json()["command_id"]
    headers = await signed_in(client, viewer)
    section = await client.get(base(device), headers=HTMX)
    assert section.status_code == 200
    assert states(section.text) == [("reboot", "pending")]
    assert "hx-post" not in section.text and "<textarea" not in section.text
    assert "<form" not in section.text and "Cancel" not in section.text
    assert "No desired configuration has been set" in section.text

    forged = [
        (base(device) + "/commands", {"command": "reboot"}),
        (f"{base(device)}/commands/{command_id}/cancel", {}),
        (base(device) + "/config", {"desired": "{}"}),
    ]
    for url, data in forged:
        r = await client.post(url, data=data, headers=headers)
        assert r.status_code == 403, url
        assert "operator" in r.text
    assert (await client.get(base(device) + "/config/form")).status_code == 403
    [only] = await api_commands(client, operator, device)
    assert only["status"] == "pending"


async def test_writes_without_the_csrf_token_are_refused(client, operator: Actor):
    device = await create_device(client, operator)
    await signed_in(client, operator)
    for url, data in [
        (base(device) + "/commands", {"command": "reboot"}),
        (base(device) + "/config", {"desired": '{"a": 1}'}),
    ]:
        r = await client.post(url, data=data, headers=HTMX)
        assert r.status_code == 403 and "Reload the page" in r.text
        r = await client.post(url, data=data, headers={**HTMX, "X-CSRF-Token": "forged"})
        assert r.status_code == 403
    assert await api_commands(client, operator, device) == []


async def test_another_workspaces_device_is_not_found(client, operator: Actor, factory: Factory):
    other = await factory.user("admin", "elsewhere")
    foreign = await create_device(client, other)
    headers = await signed_in(client, operator)
    for path in ("", "/commands", "/config"):
        r = await client.get(base(foreign) + path, headers=HTMX)
        assert r.status_code == 404, path
    r = await client.post(base(foreign) + "/commands", data={"command": "x"}, headers=headers)
    assert r.status_code == 404
    r = await client.post(base(foreign) + "/config", data={"desired": "{}"}, headers=headers)
    assert r.status_code == 404
    assert await api_commands(client, other, foreign) == []
