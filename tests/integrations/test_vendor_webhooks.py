"""Vendors' notifications from the Oura and Withings stand-ins: subscriptions made (Oura
answers the challenge first, Withings checks the callback), renewed before they expire
and by one process only; a refused signature queues nothing; hints coalesce into one
`webhook` run that syncs; an Oura delete removes the reading; Withings' unsigned hints
sync the window they name; disconnecting revokes; workspaces stay apart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.models import VendorRecord, WebhookSubscription
from fieldwatch.integrations.webhooks.keeper import SubscriptionKeeper
from fieldwatch.integrations.webhooks.repository import WebhookRepository
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, import_device, import_ring
from standins.oura import RING_ZONE
from sync_helpers import readings, runs

USER = "oura-user-hook"
OTHER = "oura-user-else"
STANDIN_USERS = [USER, OTHER]
PUBLIC = "http://fieldwatch.test"
HOOK = f"{PUBLIC}/api/v1/integrations/oura/webhook"
SUBSCRIBE = "/v2/webhook/subscription"

pytestmark = pytest.mark.usefixtures("fresh_budgets")


@pytest.fixture
def hooked(settings, client, oura):
    """Notifications on, Fieldwatch at the address the test client calls."""
    settings.vendor_webhooks = True
    settings.public_url = PUBLIC
    oura.callback = client
    return oura


async def _subscriptions(runtime: Runtime) -> list[WebhookSubscription]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(WebhookSubscription).order_by(WebhookSubscription.topic)
        )
        return list(rows.all())


async def _synced(client, actor, runtime: Runtime, user: str = USER) -> str:
    connection = await connect_as(client, actor, user)
    device = await import_ring(client, actor, connection, sync_historical_days=2,
                               sync_interval_minutes=60)  # fmt: skip
    await runtime.sync.run_once()  # the backfill; the subscriptions are made meanwhile
    (backfill,) = await runs(runtime, device)
    assert backfill.status == "completed", backfill.error_message
    return device


def _calls(vendor, method_path: str) -> int:
    return sum(1 for path, _ in vendor.calls if path.startswith(method_path))


async def test_subscriptions_are_made_after_the_challenge(client, admin, hooked, runtime) -> None:
    await connect_as(client, admin, USER)
    assert await runtime.sync.subscriptions.run() == 6
    made = hooked.subscriptions.values()
    assert {(s["event_type"], s["data_type"], s["callback_url"]) for s in made} == {
        (e, d, HOOK)
        for e in ("create", "update", "delete")
        for d in ("daily_activity", "heartrate")
    }
    rows = await _subscriptions(runtime)
    assert {r.status for r in rows} == {"active"} and len(rows) == 6
    assert {r.vendor_id for r in rows} == set(hooked.subscriptions)
    assert all(r.expires_at and r.expires_at > utcnow() + timedelta(days=9) for r in rows)
    tokens = {s["verification_token"] for s in made}
    assert not tokens & {r.token_digest for r in rows}  # only digests are kept
    token = next(iter(tokens))
    echoed = await client.get(HOOK, params={"verification_token": token, "challenge": "c-42"})
    assert echoed.status_code == 200 and echoed.json() == {"challenge": "c-42"}
    wrong = await client.get(HOOK, params={"verification_token": "guess", "challenge": "c"})
    assert problem(wrong, 401)["type"].endswith("bad-signature")
    assert await runtime.sync.subscriptions.run() == 0  # nothing due: nothing asked
    assert _calls(hooked, SUBSCRIBE) == 6 + 6  # a list before each create, then the creates


async def test_a_bad_signature_is_refused_and_queues_nothing(
    client, admin, hooked, runtime
) -> None:
    device = await _synced(client, admin, runtime)
    (refused,) = await hooked.notify("create", "heartrate", USER, "x", secret="not-the-secret")
    assert problem(refused, 401)["type"].endswith("bad-signature")
    body = b'{"event_type": "create", "data_type": "heartrate", "user_id": "%s"}' % USER.encode()
    stale = hooked.signed(body, at=datetime.now(UTC).timestamp() - 3600)
    assert (await client.post(HOOK, content=body, headers=stale)).status_code == 401
    unsigned = await client.post(HOOK, content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401
    assert len(await runs(runtime, device)) == 1  # the backfill only


async def test_hints_coalesce_into_one_webhook_run_that_syncs(
    client, admin, hooked, runtime
) -> None:
    device = await _synced(client, admin, runtime)
    hr_before = len(await readings(runtime, device, "heart_rate"))
    for event, kind in (("create", "daily_activity"), ("update", "daily_activity"),
                        ("create", "heartrate"), ("create", "heartrate")):  # fmt: skip
        (answer,) = await hooked.notify(event, kind, USER, f"{USER}-obj")
        assert answer.status_code == 204, answer.text
    (_, hinted) = await runs(runtime, device)
    assert (hinted.sync_type, hinted.status, hinted.requested_by) == (
        "webhook",
        "queued",
        "webhook:oura",
    )
    assert hinted.data_types == ["heart_rate", "steps"]
    asked = _calls(hooked, "/v2/usercollection/heartrate")
    await asyncio.sleep(1.1)  # a new minute's reading may appear at the stand-in
    await runtime.sync.run_once()
    (_, ran) = await runs(runtime, device)
    assert ran.id == hinted.id and ran.status == "completed", ran.error_message
    assert ran.records_processed >= 60  # the overlap hour at least, fetched again
    assert _calls(hooked, "/v2/usercollection/heartrate") > asked
    after = await readings(runtime, device, "heart_rate")
    assert len(after) == len(set(after)) >= hr_before


async def test_a_delete_removes_the_vendor_record(client, admin, hooked, runtime) -> None:
    device = await _synced(client, admin, runtime)
    days = await readings(runtime, device, "steps")
    assert days
    gone = days[0]
    record = f"{USER}-{gone.astimezone(RING_ZONE).date().isoformat()}"
    hooked.deleted.add(record)
    (answer,) = await hooked.notify("delete", "daily_activity", USER, record)
    assert answer.status_code == 204
    assert await readings(runtime, device, "steps") == days[1:]
    async with runtime.uow() as uow:
        row = await uow.session.get(VendorRecord, (uuid.UUID(await _connection_of(runtime,
                                                   device)), "steps", record))  # fmt: skip
    assert row is None  # its provenance is forgotten with it
    log = await client.get(f"{API}/access-log", params={"device_id": device},
                           headers=admin.headers)  # fmt: skip
    assert [(e["actor"], e["action"], e["what"]) for e in log.json()["items"]
            if e["action"] == "delete"] == [("vendor:oura", "delete",
                                             "steps deleted at the vendor")]  # fmt: skip
    assert len(await runs(runtime, device)) == 1  # a delete fetches nothing
    manual = await client.post(f"/api/v1/devices/{device}/sync", headers=admin.headers)
    assert manual.status_code == 202
    await runtime.sync.run_once()
    assert await readings(runtime, device, "steps") == days[1:]  # not back


async def _connection_of(runtime: Runtime, device: str) -> str:
    (run, *_) = await runs(runtime, device)
    return str(run.connection_id)


async def test_subscriptions_are_renewed_before_they_expire_by_one_process(
    client, admin, hooked, runtime
) -> None:
    await connect_as(client, admin, USER)
    keepers = [SubscriptionKeeper(runtime.uow, runtime.settings, runtime.sync.tokens,
                                  owner=f"p{i}", clock=utcnow) for i in (1, 2)]  # fmt: skip
    done = await asyncio.gather(*(k.run() for k in keepers))
    assert sum(done) == 6 and len(hooked.subscriptions) == 6  # each made once
    first = {r.vendor_id: r.expires_at for r in await _subscriptions(runtime)}
    creates = sum(1 for p, _ in hooked.calls if p == SUBSCRIBE)

    later = SubscriptionKeeper(runtime.uow, runtime.settings, runtime.sync.tokens, owner="p3",
                               clock=lambda: utcnow() + timedelta(days=8))  # fmt: skip
    await asyncio.sleep(0.01)
    assert await later.run() == 6  # within three days of expiring: renewed
    renewed = [p for p, _ in hooked.calls if p.startswith(f"{SUBSCRIBE}/renew/")]
    assert len(renewed) == 6 and len(hooked.subscriptions) == 6
    assert sum(1 for p, _ in hooked.calls if p == SUBSCRIBE) == creates  # none made anew
    rows = await _subscriptions(runtime)
    assert all(r.expires_at is not None and r.expires_at > first[r.vendor_id] for r in rows)

    hooked.subscriptions.clear()  # Oura lost them: renewing answers 404, they are made again
    assert await later.run() == 6
    assert len(hooked.subscriptions) == 6
    assert {r.vendor_id for r in await _subscriptions(runtime)} == set(hooked.subscriptions)


async def test_a_subscription_renewed_since_it_was_listed_is_not_claimed_again(
    client, admin, hooked, runtime
) -> None:
    """A process lists the due subscriptions, another renews them meanwhile: the first
    one's claims find them no longer due (each is made once, not twice)."""
    await connect_as(client, admin, USER)
    slow = SubscriptionKeeper(runtime.uow, runtime.settings, runtime.sync.tokens, owner="p1",
                              clock=utcnow)  # fmt: skip
    fast = SubscriptionKeeper(runtime.uow, runtime.settings, runtime.sync.tokens, owner="p2",
                              clock=utcnow)  # fmt: skip
    await slow.plan(slow._kinds())
    listed = await slow._due(slow._kinds())
    assert len(listed) == 6
    assert await fast.run() == 6
    now = utcnow()
    async with runtime.uow() as uow:
        repo = WebhookRepository(uow.session)
        lease, renew_by = now + timedelta(minutes=5), now + timedelta(days=3)
        claims = [await repo.claim(i, "p1", now, lease, renew_by, slow._kinds()) for i in listed]
    assert claims == [None] * 6 and len(hooked.subscriptions) == 6


async def test_workspaces_stay_apart(client, admin, factory, hooked, runtime) -> None:
    ours = await _synced(client, admin, runtime, USER)
    elsewhere = await factory.user("admin", workspace="elsewhere")
    theirs = await _synced(client, elsewhere, runtime, OTHER)
    ours_steps = await readings(runtime, ours, "steps")
    (answer,) = await hooked.notify("create", "heartrate", OTHER, "x")
    assert answer.status_code == 204
    assert [r.sync_type for r in await runs(runtime, theirs)] == ["backfill", "webhook"]
    assert [r.sync_type for r in await runs(runtime, ours)] == ["backfill"]
    record = f"{USER}-{ours_steps[0].astimezone(RING_ZONE).date().isoformat()}"
    await hooked.notify("delete", "daily_activity", OTHER, record)  # not their record
    assert await readings(runtime, ours, "steps") == ours_steps
    history = await client.get("/api/v1/sync/history", headers=admin.headers)
    assert {i["device_id"] for i in history.json()["items"]} == {ours}


async def test_withings_hints_sync_the_window_and_disconnect_revokes(
    client, admin, withings, settings, runtime
) -> None:
    settings.vendor_webhooks, settings.public_url = True, PUBLIC
    withings.callback = client
    user = withings.users[0]
    connection = await connect_as(client, admin, user, "withings")
    device = await import_device(client, admin, connection, f"scale-{user}", "withings",
                                 sync_historical_days=3, sync_interval_minutes=60)  # fmt: skip
    await runtime.sync.run_once()
    hook = f"{PUBLIC}/api/v1/integrations/withings/webhook"
    assert sorted(withings.notify_subs) == [(user, a, hook) for a in (1, 2, 4, 16)]
    assert (await client.head(hook)).status_code == 200
    assert (await client.get(hook)).status_code == 200

    start = int((utcnow() - timedelta(days=2)).timestamp())
    for _ in range(3):
        (answer,) = await withings.notify(user, 1, start, start + 3600)
        assert answer.status_code == 200, answer.text
    (_, hinted) = await runs(runtime, device)
    assert (hinted.sync_type, hinted.data_types) == ("webhook", ["body_weight"])
    assert hinted.since == datetime.fromtimestamp(start, UTC)
    unknown = await client.post(
        hook,
        data={"userid": "nobody", "appli": "1", "startdate": str(start), "enddate": str(start)},
    )
    assert unknown.status_code == 200 and len(await runs(runtime, device)) == 2
    await runtime.sync.run_once()
    (_, ran) = await runs(runtime, device)
    assert ran.status == "completed" and ran.records_processed >= 2, ran.error_message

    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.status_code == 200, gone.text
    assert withings.notify_subs == []
    assert {r.status for r in await _subscriptions(runtime)} == {"revoked"}
    await withings.notify(user, 1, start, start + 3600)  # nothing subscribed: nothing sent
    late = await client.post(hook, data={"userid": user, "appli": "1", "startdate": str(start)})
    assert late.status_code == 200 and len(await runs(runtime, device)) == 2


async def test_a_hinted_window_survives_a_retry(client, admin, withings, settings, runtime) -> None:
    settings.vendor_webhooks, settings.public_url = True, PUBLIC
    withings.callback = client
    user = withings.users[0]
    connection = await connect_as(client, admin, user, "withings")
    device = await import_device(client, admin, connection, f"scale-{user}", "withings",
                                 sync_historical_days=3, sync_interval_minutes=60)  # fmt: skip
    await runtime.sync.run_once()
    start = int((utcnow() - timedelta(days=2)).timestamp())
    (answer,) = await withings.notify(user, 4, start, start + 3600)
    assert answer.status_code == 200
    withings.fail("/measure", 500)
    await runtime.sync.run_once()
    (_, failed, retry) = await runs(runtime, device)
    assert (failed.sync_type, failed.status) == ("webhook", "failed")
    assert (retry.status, retry.retry_of, retry.data_types) == (
        "retry_wait",
        failed.id,
        ["diastolic_bp", "heart_rate", "spo2", "systolic_bp"],
    )
    assert retry.since == failed.since == datetime.fromtimestamp(start, UTC)
