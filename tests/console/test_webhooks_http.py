"""The console's webhooks pages over HTTP: create (the secret shown once), field errors, a
test delivery to a real local HTTP receiver and its result, disable, a new secret,
delete; admins only change them, others read; CSRF."""

from __future__ import annotations

import asyncio
import html as html_lib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import Actor, Factory
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in
from fieldwatch.runtime import Runtime


class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1: keeps each request's body and answers
    ``default``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.default = 200
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self.bodies.append(json.loads(await reader.readexactly(length)))
        text = b"ok" if self.default < 300 else b"receiver says no"
        head = (
            f"HTTP/1.1 {self.default} X\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + text)
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver(runtime: Runtime) -> AsyncIterator[Receiver]:
    """A real HTTP server on loopback; private targets allowed for these tests."""
    runtime.settings.webhook_allow_private = True
    found = Receiver()
    await found.start()
    try:
        yield found
    finally:
        await found.close()


async def api_hooks(client: httpx.AsyncClient, actor: Actor) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/webhooks", headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def field_error(text: str, name: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="e-{name}">([^<]+)</p>', text)
    return html_lib.unescape(found.group(1)) if found else None


def secret_of(text: str) -> str:
    found = re.search(r'<input id="secret" class="secret" readonly value="([^"]+)"', text)
    assert found, text
    return found.group(1)


async def create(client: httpx.AsyncClient, csrf: str, url: str, **fields: Any) -> httpx.Response:
    data = {"csrf_token": csrf, "url": url, "description": "pager", "event_types": ["alert.*"],
            "enabled": "on", **fields}  # fmt: skip
    return await client.post("/console/webhooks", data=data)


async def test_create_shows_the_secret_once_and_a_test_is_delivered(
    client, admin: Actor, runtime: Runtime, receiver
):
    await sign_in(client, admin.email)
    page = await client.get("/console/webhooks")
    assert page.status_code == 200 and "No webhooks yet — create one below" in page.text
    assert 'aria-current="page">Webhooks<' in page.text
    csrf = csrf_of(page.text)

    r = await create(client, csrf, receiver.url(), event_types=["alert.raised", "alert.cleared"])
    assert r.status_code == 200, r.text
    assert "Copy it now: it is not shown again." in r.text
    secret = secret_of(r.text)
    [hook] = await api_hooks(client, admin)
    assert (hook["url"], hook["description"]) == (receiver.url(), "pager")
    assert hook["event_types"] == ["alert.raised", "alert.cleared"] and hook["enabled"] is True
    # Shown once: neither the list nor the webhook's page shows it again.
    detail = await client.get(f"/console/webhooks/{hook['id']}")
    assert detail.status_code == 200 and secret not in detail.text
    assert "No deliveries yet: alert events are sent here" in detail.text
    listing = await client.get("/console/webhooks")
    assert secret not in listing.text
    assert f'<a href="/console/webhooks/{hook["id"]}">{receiver.url()}</a>' in listing.text

    # A test delivery: queued, then sent to the receiver, its result on the page.
    r = await client.post(f"/console/webhooks/{hook['id']}/test", headers={"HX-Request": "true",
                          "X-CSRF-Token": csrf})  # fmt: skip
    assert r.status_code == 200, r.text
    assert 'data-status="pending"' in r.text and "webhook.test" in r.text
    assert 'hx-trigger="load delay:1s"' in r.text  # it checks again while pending
    assert await runtime.webhooks.run_once() == 1
    [sent] = receiver.bodies
    assert sent["type"] == "webhook.test"
    r = await client.get(f"/console/webhooks/{hook['id']}/deliveries")
    row = re.search(r'<tr id="delivery-\d+" data-status="(\w+)">(.*?)</tr>', r.text, re.S)
    assert row and row.group(1) == "delivered"
    assert '<td class="num">200</td>' in row.group(2) and "<time" in row.group(2)
    assert "hx-trigger" not in r.text  # nothing pending: no more checks

    # A failing receiver: the status code and the error are shown.
    receiver.default = 500
    r = await client.post(f"/console/webhooks/{hook['id']}/test", data={"csrf_token": csrf})
    assert r.status_code == 303  # without htmx: back to the webhook's page
    assert await runtime.webhooks.run_once() == 1
    r = await client.get(r.headers["location"])
    newest = re.search(r'<tr id="delivery-\d+" data-status="(\w+)">(.*?)</tr>', r.text, re.S)
    assert newest and '<td class="num">500</td>' in newest.group(2)
    assert 'class="error"' in newest.group(2)


async def test_disable_rotate_and_delete(client, admin: Actor, receiver):
    await sign_in(client, admin.email)
    csrf = csrf_of((await client.get("/console/webhooks")).text)
    first = secret_of((await create(client, csrf, receiver.url())).text)
    [hook] = await api_hooks(client, admin)
    base = f"/console/webhooks/{hook['id']}"

    r = await client.post(f"{base}/enabled", data={"csrf_token": csrf, "enabled": "false"})
    assert r.status_code == 303 and r.headers["location"] == f"{base}?done=disabled"
    assert (await api_hooks(client, admin))[0]["enabled"] is False
    page = await client.get(r.headers["location"])
    assert "The webhook is disabled" in page.text and ">Enable</button>" in page.text
    # A disabled webhook sends no test: the reason, next to the button.
    r = await client.post(f"{base}/test", headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert r.status_code == 409 and "Enable the webhook first" in r.text
    assert 'class="problem"' in r.text

    r = await client.post(f"{base}/rotate-secret", data={"csrf_token": csrf})
    assert r.status_code == 200 and "The new signing secret" in r.text
    assert secret_of(r.text) != first

    r = await client.post(f"{base}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/webhooks?done=deleted"
    assert await api_hooks(client, admin) == []
    assert (await client.get(base)).status_code == 404


async def test_field_errors_are_shown_next_to_their_fields(client, admin: Actor, runtime):
    assert runtime.settings.webhook_allow_private is False
    await sign_in(client, admin.email)
    csrf = csrf_of((await client.get("/console/webhooks")).text)
    r = await create(client, csrf, "http://127.0.0.1/hook")  # refused: loopback
    assert r.status_code == 422
    assert "loopback" in (field_error(r.text, "url") or "")
    assert 'aria-describedby="h-url e-url" aria-invalid="true"' in r.text
    assert 'value="http://127.0.0.1/hook"' in r.text  # what was typed stays
    r = await create(client, csrf, "", event_types=[])
    assert r.status_code == 422
    assert field_error(r.text, "url") == "String should have at least 1 character"
    assert (
        field_error(r.text, "event_types")
        == "List should have at least 1 item after validation, not 0"
    )
    assert await api_hooks(client, admin) == []


async def test_others_read_only_and_writes_need_csrf(
    client, admin: Actor, operator: Actor, factory: Factory, receiver
):
    await sign_in(client, admin.email)
    csrf = csrf_of((await client.get("/console/webhooks")).text)
    await create(client, csrf, receiver.url())
    [hook] = await api_hooks(client, admin)
    r = await client.post(f"/console/webhooks/{hook['id']}/delete")
    assert r.status_code == 403 and "Reload the page" in r.text

    client.cookies.clear()
    await sign_in(client, operator.email)  # an operator: webhooks are the admins'
    page = await client.get("/console/webhooks")
    assert receiver.url() in page.text and "New webhook" not in page.text
    detail = await client.get(f"/console/webhooks/{hook['id']}")
    assert detail.status_code == 200 and "Send a test" not in detail.text
    assert "Delete webhook" not in detail.text
    csrf = csrf_of(page.text)
    r = await create(client, csrf, receiver.url())
    assert r.status_code == 403 and "admin" in r.text
    r = await client.post(f"/console/webhooks/{hook['id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 403
    assert len(await api_hooks(client, admin)) == 1

    stranger = await factory.user("admin", "globex")
    client.cookies.clear()
    await sign_in(client, stranger.email)
    assert (await client.get(f"/console/webhooks/{hook['id']}")).status_code == 404
