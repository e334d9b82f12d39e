"""The vendors' notification subscriptions as admins see them
(``GET /api/v1/integrations/subscriptions``): Oura's app subscriptions made against the
stand-in with their expiry and renewal state (scheduled, then due inside the renewal
window, expired), a failing one retrying with its error, Withings' per connection (no
expiry); another workspace sees only what serves its own connections; operators are
refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.models import WebhookSubscription
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as

USER = "oura-user-subs"
STANDIN_USERS = [USER]
PUBLIC = "http://fieldwatch.test"
URL = f"{API}/subscriptions"

pytestmark = pytest.mark.usefixtures("fresh_budgets")


@pytest.fixture
def hooked(settings, client, oura):
    settings.vendor_webhooks = True
    settings.public_url = PUBLIC
    oura.callback = client
    return oura


async def _set(runtime: Runtime, **values: object) -> None:
    async with runtime.uow() as uow:
        await uow.session.execute(update(WebhookSubscription).values(**values))
        await uow.commit()


async def test_oura_subscriptions_with_their_renewal_state(
    client, admin, factory, hooked, runtime: Runtime
) -> None:
    assert (await client.get(URL, headers=admin.headers)).json()["total"] == 0
    await connect_as(client, admin, USER)
    assert await runtime.sync.subscriptions.run() == 6
    page = (await client.get(URL, headers=admin.headers)).json()
    assert page["total"] == 6
    topics = sorted(i["topic"] for i in page["items"])
    assert topics == sorted(f"{e}:{d}" for e in ("create", "update", "delete")
                            for d in ("daily_activity", "heartrate"))  # fmt: skip
    first = page["items"][0]
    assert (first["connector"], first["scope"], first["status"], first["renewal"]) == (
        "oura", "app", "active", "scheduled")  # fmt: skip
    assert first["callback_url"] == f"{PUBLIC}/api/v1/integrations/oura/webhook"
    assert first["expires_at"] and first["renew_at"] < first["expires_at"]
    assert "token_digest" not in first and "vendor_id" not in first

    await _set(runtime, expires_at=utcnow() + timedelta(days=1))  # inside the 3-day window
    assert {i["renewal"] for i in (await client.get(URL, headers=admin.headers)).json()["items"]} \
        == {"due"}  # fmt: skip
    await _set(runtime, expires_at=utcnow() - timedelta(minutes=1))
    assert {i["renewal"] for i in (await client.get(URL, headers=admin.headers)).json()["items"]} \
        == {"expired"}  # fmt: skip
    await _set(runtime, status="failed", failures=2, last_error="the vendor answered HTTP 503",
               not_before=utcnow() + timedelta(minutes=5))  # fmt: skip
    failed = (await client.get(URL, params={"status": "failed"}, headers=admin.headers)).json()
    assert failed["total"] == 6
    item = failed["items"][0]
    assert (item["renewal"], item["failures"], item["last_error"]) == (
        "retrying", 2, "the vendor answered HTTP 503")  # fmt: skip
    assert item["next_attempt_at"]
    none = await client.get(URL, params={"connector": "withings"}, headers=admin.headers)
    assert none.json()["total"] == 0

    elsewhere = await factory.user("admin", workspace="elsewhere")
    assert (await client.get(URL, headers=elsewhere.headers)).json()["total"] == 0
    operator = await factory.user("operator")
    problem(await client.get(URL, headers=operator.headers), 403)
    problem(await client.get(URL, params={"status": "nonsense"}, headers=admin.headers), 422)


async def test_withings_subscriptions_per_connection_do_not_expire(
    client, admin, factory, settings, withings, runtime: Runtime
) -> None:
    settings.vendor_webhooks = True
    settings.public_url = PUBLIC
    withings.callback = client
    connection = await connect_as(client, admin, withings.users[0], "withings")
    assert await runtime.sync.subscriptions.run() > 0
    items = (await client.get(URL, headers=admin.headers)).json()["items"]
    assert items and {
        (i["connector"], i["scope"], i["connection_id"], i["renewal"]) for i in items
    } == {("withings", "connection", connection, "not_needed")}
    elsewhere = await factory.user("admin", workspace="elsewhere")
    assert (await client.get(URL, headers=elsewhere.headers)).json()["total"] == 0
