"""Webhooks: API, SSRF protection, signed delivery to a real HTTP receiver, retries,
and the database-backed queue surviving a restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import problem
from fieldwatch import __version__
from fieldwatch.core.events import Event
from fieldwatch.runtime import build_runtime
from fieldwatch.webhooks import signing
from fieldwatch.webhooks.dispatcher import WebhookDispatcher, backoff_delay
from fieldwatch.webhooks.urlsafety import address_problem
from telemetry_helpers import device_with_token, iso, recent

# --- a real HTTP receiver -----------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1: records each request and answers with the
    next scripted status (then ``default``)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.default = 200
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.statuses.pop(0) if self.statuses else self.default
            text = b"ok" if status < 300 else b"receiver says no"
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            writer.write(
                f"HTTP/1.1 {status} Whatever\r\nContent-Length: {len(text)}\r\n{extra}"
                "Connection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (timeout tests)
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.close()


@pytest.fixture
def allow_private(runtime):
    """The receiver listens on loopback: allow private targets for these tests."""
    runtime.settings.webhook_allow_private = True
    runtime.settings.webhook_backoff_base_s = 0.0
    runtime.settings.webhook_backoff_cap_s = 0.0
    return runtime.settings


PUBLIC_URL = "https://1.1.1.1/hooks/fieldwatch"


async def create_webhook(client, who, **fields: Any) -> dict[str, Any]:
    body = {"url": PUBLIC_URL, **fields}
    r = await client.post("/api/v1/webhooks", json=body, headers=who.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def alert_event(workspace_id: uuid.UUID, kind: str = "alert.raised", **payload: Any) -> Event:
    device_id = uuid.uuid4()
    data = {
        "alert_id": str(uuid.uuid4()),
        "device_id": str(device_id),
        "severity": "critical",
        "message": "temperature above 80",
        "last_value": 81.5,
        **payload,
    }
    return Event(type=kind, workspace_id=workspace_id, subject_id=device_id, payload=data)


async def deliveries(client, who, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get(
        f"/api/v1/webhooks/{webhook_id}/deliveries", params=params, headers=who.headers
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- API ------------------------------------------------------------------------------------


async def test_crud_roles_and_secret_shown_once(client, admin, operator, viewer):
    r = await client.get("/api/v1/webhooks", headers=viewer.headers)
    assert r.status_code == 200 and r.json()["items"] == []

    body = {"url": PUBLIC_URL, "description": "pager"}
    problem(await client.post("/api/v1/webhooks", json=body, headers=viewer.headers), 403)
    problem(await client.post("/api/v1/webhooks", json=body, headers=operator.headers), 403)

    r = await client.post("/api/v1/webhooks", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert len(secret) >= 43 and secret != signing.new_secret()
    assert created["url"] == PUBLIC_URL
    assert created["description"] == "pager"
    assert created["event_types"] == ["alert.*"]
    assert created["enabled"] is True
    assert created["created_by"] == str(admin.user_id)
    assert created["consecutive_failures"] == 0 and created["last_status"] is None
    hook = f"/api/v1/webhooks/{created['id']}"

    r = await client.get(hook, headers=viewer.headers)
    assert r.status_code == 200
    assert "secret" not in r.json() and secret not in r.text
    r = await client.get("/api/v1/webhooks", headers=viewer.headers)
    assert [w["id"] for w in r.json()["items"]] == [created["id"]]
    assert secret not in r.text and "secret" not in r.json()["items"][0]

    patch = {"description": None, "event_types": ["alert.raised", "alert.cleared"]}
    problem(await client.patch(hook, json=patch, headers=operator.headers), 403)
    r = await client.patch(hook, json={**patch, "enabled": False}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["description"] is None
    assert r.json()["event_types"] == ["alert.raised", "alert.cleared"]
    assert r.json()["enabled"] is False and "secret" not in r.json()
    problem(await client.patch(hook, json={"enabled": None}, headers=admin.headers), 422)
    bad = await client.patch(hook, json={"event_types": ["device.*"]}, headers=admin.headers)
    assert problem(bad, 422)["errors"][0]["field"] == "event_types"

    problem(await client.post(f"{hook}/rotate-secret", headers=viewer.headers), 403)
    r = await client.post(f"{hook}/rotate-secret", headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["secret"] != secret and len(r.json()["secret"]) >= 43
    assert (await client.get(hook, headers=admin.headers)).json()["event_types"] == [
        "alert.raised",
        "alert.cleared",
    ]

    problem(await client.delete(hook, headers=operator.headers), 403)
    r = await client.delete(hook, headers=admin.headers)
    assert r.status_code == 204
    problem(await client.get(hook, headers=admin.headers), 404)
    assert (await client.get("/api/v1/webhooks", headers=admin.headers)).json()["items"] == []


async def test_another_workspace_gets_404_everywhere(client, admin, factory):
    mine = await create_webhook(client, admin)
    stranger = await factory.user("admin", workspace="globex")
    hook = f"/api/v1/webhooks/{mine['id']}"
    calls = [
        client.get(hook, headers=stranger.headers),
        client.patch(hook, json={"description": "x"}, headers=stranger.headers),
        client.delete(hook, headers=stranger.headers),
        client.post(f"{hook}/rotate-secret", headers=stranger.headers),
        client.post(f"{hook}/test", headers=stranger.headers),
        client.get(f"{hook}/deliveries", headers=stranger.headers),
    ]
    for call in calls:
        assert problem(await call, 404)["title"] == "Webhook not found"
    assert (await client.get("/api/v1/webhooks", headers=stranger.headers)).json()["items"] == []
    r = await client.get(hook, headers=admin.headers)
    assert r.status_code == 200 and r.json()["description"] is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://172.16.5.4/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://100.64.0.1/hook", "not a public"),
        ("http://2130706433/hook", "loopback"),  # 127.0.0.1 spelled as a number
        ("ftp://1.1.1.1/hook", "only http"),
        ("file:///etc/passwd", "only http"),
        ("javascript:alert(1)", "only http"),
        ("http://user:pw@1.1.1.1/hook", "credentials"),
        ("http:///nohost", "no host"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_unsafe_urls_are_refused(client, admin, runtime, url, reason):
    assert runtime.settings.webhook_allow_private is False
    r = await client.post("/api/v1/webhooks", json={"url": url}, headers=admin.headers)
    body = problem(r, 422)
    assert body["errors"][0]["field"] == "url"
    assert reason in body["errors"][0]["message"]
    assert reason in body["detail"]
    assert (await client.get("/api/v1/webhooks", headers=admin.headers)).json()["items"] == []


async def test_unsafe_url_refused_on_update_and_private_allowed_by_setting(client, admin, runtime):
    hook = await create_webhook(client, admin)
    r = await client.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"url": "http://169.254.169.254/"},
        headers=admin.headers,
    )
    refused = problem(r, 422)
    assert "link-local" in refused["errors"][0]["message"]
    assert "FIELDWATCH_WEBHOOK_ALLOW_PRIVATE=true" in refused["detail"]  # what would allow it
    r = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin.headers)
    assert r.json()["url"] == PUBLIC_URL

    runtime.settings.webhook_allow_private = True
    r = await client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=admin.headers
    )
    assert r.status_code == 201 and r.json()["url"] == "http://127.0.0.1:9/x"
    # the scheme is still checked
    r = await client.post(
        "/api/v1/webhooks", json={"url": "ftp://10.0.0.1/"}, headers=admin.headers
    )
    problem(r, 422)


def test_address_classification():
    def problem_of(text: str) -> str | None:
        return address_problem(ipaddress.ip_address(text))

    assert problem_of("1.1.1.1") is None
    assert problem_of("2606:4700:4700::1111") is None
    assert "loopback" in (problem_of("::ffff:7f00:1") or "")
    assert "private" in (problem_of("::ffff:10.0.0.1") or "")
    assert "link-local" in (problem_of("2002:a9fe:a9fe::1") or "")  # 6to4 of 169.254.169.254
    assert "private" in (problem_of("64:ff9b::a00:1") or "")  # NAT64 of 10.0.0.1
    assert problem_of("::ffff:1.1.1.1") is None


def test_backoff_grows_exponentially_with_jitter_and_cap():
    for attempts, base in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0)]:
        delay = backoff_delay(attempts, 5.0, 3600.0)
        assert base <= delay <= base * 1.1
    assert 3600.0 <= backoff_delay(30, 5.0, 3600.0) <= 3960.0


def test_signature_helper_verifies_and_rejects_old_or_tampered():
    secret, ts, body = "s3cret", int(time.time()), b'{"a":1}'
    sig = signing.sign(secret, ts, body)
    assert sig == expected_signature(secret, str(ts), body)
    assert signing.verify(secret, sig, str(ts), body)
    assert not signing.verify(secret, sig, str(ts), b'{"a":2}')
    assert not signing.verify("other", sig, str(ts), body)
    assert not signing.verify(secret, sig, str(ts), body, now=ts + 301)
    assert not signing.verify(secret, sig, "yesterday", body)


# --- delivery -------------------------------------------------------------------------------


async def test_alert_event_is_delivered_once_signed(
    client, admin, factory, runtime, receiver, allow_private
):
    hook = await create_webhook(client, admin, url=receiver.url("/alerts?src=fw"))
    other_receiver = Receiver()
    await other_receiver.start()
    try:
        stranger = await factory.user("admin", workspace="globex")
        other = await create_webhook(client, stranger, url=other_receiver.url())

        event = alert_event(admin.workspace_id)
        await runtime.bus.publish(event)
        await runtime.bus.publish(event)  # the same event again: queued once
        queued = await deliveries(client, admin, hook["id"])
        assert [(d["status"], d["attempts"], d["event_type"]) for d in queued] == [
            ("pending", 0, "alert.raised")
        ]

        assert await runtime.webhooks.run_once() == 1
        assert await runtime.webhooks.run_once() == 0
    finally:
        await other_receiver.close()

    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req.method == "POST" and req.path == "/alerts?src=fw"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == f"Fieldwatch-Webhooks/{__version__}"
    assert req.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert req.headers["x-fieldwatch-event"] == "alert.raised"
    assert req.headers["x-fieldwatch-delivery"] == str(queued[0]["id"])
    timestamp = req.headers["x-fieldwatch-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    assert req.headers["x-fieldwatch-signature"] == expected_signature(
        hook["secret"], timestamp, req.body
    )
    assert req.headers["x-fieldwatch-signature"] != expected_signature("wrong", timestamp, req.body)
    assert req.json() == {
        "id": str(event.id),
        "type": "alert.raised",
        "occurred_at": event.occurred_at.isoformat(),
        "workspace_id": str(admin.workspace_id),
        "data": event.payload,
    }
    assert "secret" not in req.body.decode()

    [done] = await deliveries(client, admin, hook["id"])
    assert done["status"] == "delivered" and done["attempts"] == 1
    assert done["last_status_code"] == 200 and done["last_error"] is None
    assert done["delivered_at"] is not None
    r = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin.headers)
    assert r.json()["last_status"] == 200 and r.json()["last_delivery_at"] is not None
    assert r.json()["consecutive_failures"] == 0 and r.json()["last_error"] is None

    assert other_receiver.requests == []
    assert await deliveries(client, stranger, other["id"]) == []


async def test_event_types_filter_and_disabled_webhooks(
    client, admin, runtime, receiver, allow_private
):
    cleared = await create_webhook(
        client, admin, url=receiver.url("/cleared"), event_types=["alert.cleared"]
    )
    everything = await create_webhook(client, admin, url=receiver.url("/all"))
    await create_webhook(client, admin, url=receiver.url("/off"), enabled=False)

    await runtime.bus.publish(alert_event(admin.workspace_id, "alert.raised"))
    await runtime.bus.publish(alert_event(admin.workspace_id, "alert.cleared"))
    await runtime.bus.publish(
        Event(type="device.status_changed", workspace_id=admin.workspace_id, payload={})
    )
    assert await runtime.webhooks.run_once() == 3
    assert await runtime.webhooks.run_once() == 0

    got = sorted((r.path, r.headers["x-fieldwatch-event"]) for r in receiver.requests)
    assert got == [
        ("/all", "alert.cleared"),
        ("/all", "alert.raised"),
        ("/cleared", "alert.cleared"),
    ]
    assert [d["event_type"] for d in await deliveries(client, admin, cleared["id"])] == [
        "alert.cleared"
    ]
    assert len(await deliveries(client, admin, everything["id"])) == 2


async def test_test_delivery_ignores_event_types(client, admin, viewer, runtime, receiver):
    runtime.settings.webhook_allow_private = True
    hook = await create_webhook(client, admin, url=receiver.url(), event_types=["alert.cleared"])
    problem(await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=viewer.headers), 403)
    r = await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=admin.headers)
    assert r.status_code == 202, r.text
    assert r.json()["event_type"] == "webhook.test" and r.json()["status"] == "pending"

    assert await runtime.webhooks.run_once() == 1
    [req] = receiver.requests
    assert req.headers["x-fieldwatch-event"] == "webhook.test"
    assert req.json()["data"]["webhook_id"] == hook["id"]
    assert req.headers["x-fieldwatch-signature"] == expected_signature(
        hook["secret"], req.headers["x-fieldwatch-timestamp"], req.body
    )

    await client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=admin.headers
    )
    r = await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=admin.headers)
    assert problem(r, 409)["title"] == "Webhook is disabled"


async def test_rotated_secret_signs_the_next_delivery(client, admin, runtime, receiver):
    runtime.settings.webhook_allow_private = True
    hook = await create_webhook(client, admin, url=receiver.url())
    r = await client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=admin.headers)
    new_secret = r.json()["secret"]
    await runtime.bus.publish(alert_event(admin.workspace_id))
    assert await runtime.webhooks.run_once() == 1
    [req] = receiver.requests
    ts = req.headers["x-fieldwatch-timestamp"]
    assert req.headers["x-fieldwatch-signature"] == expected_signature(new_secret, ts, req.body)
    assert req.headers["x-fieldwatch-signature"] != expected_signature(hook["secret"], ts, req.body)


async def test_failed_attempts_are_retried_until_delivered(
    client, admin, runtime, receiver, allow_private
):
    receiver.statuses = [500, 500, 200]
    hook = await create_webhook(client, admin, url=receiver.url())
    await runtime.bus.publish(alert_event(admin.workspace_id))

    assert await runtime.webhooks.run_once() == 1
    assert await runtime.webhooks.run_once() == 1
    [pending] = await deliveries(client, admin, hook["id"])
    assert pending["status"] == "pending" and pending["attempts"] == 2
    assert pending["last_status_code"] == 500
    assert pending["last_error"] == "HTTP 500: receiver says no"
    r = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin.headers)
    assert r.json()["consecutive_failures"] == 2 and r.json()["last_status"] == 500

    assert await runtime.webhooks.run_once() == 1
    [done] = await deliveries(client, admin, hook["id"])
    assert done["status"] == "delivered" and done["attempts"] == 3
    assert done["last_status_code"] == 200 and done["last_error"] is None
    assert len(receiver.requests) == 3
    assert len({r.headers["x-fieldwatch-delivery"] for r in receiver.requests}) == 1
    assert len({r.json()["id"] for r in receiver.requests}) == 1
    r = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin.headers)
    assert r.json()["consecutive_failures"] == 0 and r.json()["last_status"] == 200


async def test_always_failing_receiver_ends_failed_after_max_attempts(
    client, admin, runtime, receiver, allow_private, caplog
):
    caplog.set_level(logging.INFO)  # httpx and everything else
    caplog.set_level(logging.DEBUG, logger="fieldwatch")  # (aiosqlite logs SQL parameters)
    runtime.settings.webhook_max_attempts = 3
    runtime.settings.webhook_backoff_base_s = 0.3
    runtime.settings.webhook_backoff_cap_s = 0.3
    receiver.default = 503
    hook = await create_webhook(client, admin, url=receiver.url())
    await runtime.bus.publish(alert_event(admin.workspace_id))

    assert await runtime.webhooks.run_once() == 1
    assert await runtime.webhooks.run_once() == 0  # backing off: not due yet
    [waiting] = await deliveries(client, admin, hook["id"])
    assert waiting["status"] == "pending" and waiting["attempts"] == 1
    for _ in range(2):
        await asyncio.sleep(0.4)
        assert await runtime.webhooks.run_once() == 1

    [failed] = await deliveries(client, admin, hook["id"], status="failed")
    assert failed["status"] == "failed" and failed["attempts"] == 3
    assert failed["last_status_code"] == 503
    assert await deliveries(client, admin, hook["id"], status="pending") == []
    await asyncio.sleep(0.4)
    assert await runtime.webhooks.run_once() == 0
    assert len(receiver.requests) == 3
    r = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin.headers)
    assert r.json()["consecutive_failures"] == 3 and r.json()["last_status"] == 503
    assert r.json()["last_error"].startswith("HTTP 503")
    assert "webhook delivery attempt failed: HTTP 503" in caplog.text
    assert hook["secret"] not in caplog.text


async def test_delivery_to_a_now_private_address_fails_without_retry(
    client, admin, runtime, receiver, allow_private
):
    hook = await create_webhook(client, admin, url=receiver.url())
    await runtime.bus.publish(alert_event(admin.workspace_id))
    runtime.settings.webhook_allow_private = False

    assert await runtime.webhooks.run_once() == 1
    assert await runtime.webhooks.run_once() == 0
    assert receiver.requests == []
    [failed] = await deliveries(client, admin, hook["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert failed["last_status_code"] is None
    assert failed["last_error"].startswith("refused: ")
    assert "127.0.0.1 is a loopback address" in failed["last_error"]
    r = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=admin.headers)
    assert r.json()["last_error"] == failed["last_error"]
    assert r.json()["consecutive_failures"] == 1


async def test_unreachable_receiver_is_retried(client, admin, runtime, receiver, allow_private):
    hook = await create_webhook(client, admin, url=receiver.url())
    await receiver.close()  # nothing listens on the port any more
    await runtime.bus.publish(alert_event(admin.workspace_id))
    assert await runtime.webhooks.run_once() == 1
    [pending] = await deliveries(client, admin, hook["id"])
    assert pending["status"] == "pending" and pending["attempts"] == 1
    assert pending["last_error"].startswith("could not connect to 127.0.0.1")


async def test_pending_deliveries_survive_a_restart(
    client, admin, runtime, settings, receiver, allow_private
):
    hook = await create_webhook(client, admin, url=receiver.url())
    event = alert_event(admin.workspace_id)
    await runtime.bus.publish(event)
    assert [d["status"] for d in await deliveries(client, admin, hook["id"])] == ["pending"]
    assert receiver.requests == []

    restarted = build_runtime(settings)  # a new process over the same database
    await restarted.start()  # its background worker picks the pending delivery up
    try:
        for _ in range(100):
            found = await deliveries(client, admin, hook["id"], status="delivered")
            if found:
                break
            await asyncio.sleep(0.05)
    finally:
        await restarted.close()

    [req] = receiver.requests
    assert req.json()["id"] == str(event.id)
    assert req.headers["x-fieldwatch-signature"] == expected_signature(
        hook["secret"], req.headers["x-fieldwatch-timestamp"], req.body
    )
    [done] = await deliveries(client, admin, hook["id"])
    assert done["status"] == "delivered" and done["attempts"] == 1


async def test_redirects_are_not_followed(client, admin, runtime, receiver, allow_private):
    receiver.statuses = [302]
    receiver.headers = {"Location": receiver.url("/elsewhere")}
    hook = await create_webhook(client, admin, url=receiver.url())
    await runtime.bus.publish(alert_event(admin.workspace_id))
    assert await runtime.webhooks.run_once() == 1
    assert [r.path for r in receiver.requests] == ["/hook"]
    [pending] = await deliveries(client, admin, hook["id"])
    assert pending["status"] == "pending" and pending["last_status_code"] == 302
    assert "redirect to" in pending["last_error"] and "not followed" in pending["last_error"]


async def test_a_receiver_that_does_not_answer_times_out(
    client, admin, runtime, receiver, allow_private
):
    runtime.settings.webhook_timeout_s = 0.3
    receiver.delay = 2.0
    hook = await create_webhook(client, admin, url=receiver.url())
    await runtime.bus.publish(alert_event(admin.workspace_id))
    started = time.monotonic()
    assert await runtime.webhooks.run_once() == 1
    assert time.monotonic() - started < 1.5
    [pending] = await deliveries(client, admin, hook["id"])
    assert pending["status"] == "pending" and pending["attempts"] == 1
    assert pending["last_error"] == "no answer within 0.3 s"


async def test_two_workers_share_the_queue_without_sending_twice(
    client, admin, runtime, receiver, allow_private
):
    await create_webhook(client, admin, url=receiver.url())
    events = [alert_event(admin.workspace_id, sequence=i) for i in range(8)]
    for event in events:
        await runtime.bus.publish(event)
    runtime.settings.webhook_batch_size = 5
    other = WebhookDispatcher(runtime.settings, runtime.sessionmaker)
    try:
        counts = await asyncio.gather(runtime.webhooks.run_once(), other.run_once())
        counts += await asyncio.gather(runtime.webhooks.run_once(), other.run_once())
    finally:
        await other.stop()
    assert sum(counts) == 8
    assert sorted(r.json()["id"] for r in receiver.requests) == sorted(str(e.id) for e in events)


async def test_a_raised_alert_is_delivered_with_its_device(
    client, admin, runtime, receiver, allow_private
):
    hook = await create_webhook(client, admin, url=receiver.url())
    r = await client.post("/api/v1/alert-rules", headers=admin.headers, json={
        "name": "Too hot", "metric": "t", "operator": ">", "threshold": 30,
    })  # fmt: skip
    assert r.status_code == 201, r.text
    device, token = await device_with_token(
        client, admin, name="Pump 3", type="pump", serial_number="PX-3"
    )
    r = await client.put(f"/api/v1/devices/{device['id']}/deploy", json={"location": "Dock B"},
                         headers=admin.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    reading = {"data_type": "t", "values": [{"timestamp": iso(recent(5)), "value": 31.0}]}
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=reading, headers=token)
    assert r.status_code == 200, r.text
    assert await runtime.webhooks.run_once() == 1
    [req] = receiver.requests
    data = req.json()["data"]
    assert req.json()["type"] == "alert.raised" and data["device_id"] == device["id"]
    assert data["device"] == {"id": device["id"], "name": "Pump 3", "serial_number": "PX-3",
                              "type": "pump", "location": "Dock B"}  # fmt: skip
    [delivery] = await deliveries(client, admin, hook["id"])
    assert delivery["status"] == "delivered"
