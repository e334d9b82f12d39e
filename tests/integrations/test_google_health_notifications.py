"""Google Health's notifications against its stand-in, signed as Google's webhooks
service signs them (a Tink ECDSA P-256 signature of the body in
``GOOGLE-HEALTH-API-SIGNATURE``, checked against the keyset the stand-in publishes): the
subscriber endpoint check (201 with the secret, 401 without), an UPSERT queuing a
webhook sync from its interval's start, a DELETE removing the readings stored in its
interval (rollups rebuilt, in the access log, not back on the next sync), deliveries
unsigned, forged, tampered with, with a wrong secret or of another shape refused, a key
rotation followed, and keys that cannot be fetched answered 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from conftest import problem
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.dependencies import GOOGLE_HEALTH_KEYS
from fieldwatch.integrations.webhooks.google_signature import REFETCH_S, REFRESH_S, SignatureKeys
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, google_health_standin, import_device
from standins.google_health import SIGNATURE_HEADER, GoogleHealth, notification
from sync_helpers import readings, runs

USER = "ghu-notify-1"
KIND = "google_health"
HOOK = f"{API}/google_health/webhook"
SECRET = "subscriber-secret-0123456789"
AUTH = {"authorization": f"Bearer {SECRET}"}

pytestmark = pytest.mark.usefixtures("fresh_budgets")


@pytest.fixture
async def google(settings: Settings) -> AsyncIterator[GoogleHealth]:
    async with google_health_standin(settings, users=[USER]) as vendor:
        settings.google_health.webhook_secret = SECRET
        yield vendor


async def _post(client, google: GoogleHealth, delivery: object,
                auth: dict[str, str] | None = None):  # fmt: skip
    """``delivery`` as Google sends it: signed; with the secret only if ``auth``."""
    body, signed = google.signed(delivery)
    headers = {"content-type": "application/json", **signed, **(auth or {})}
    return await client.post(HOOK, content=body, headers=headers)


async def _synced(client, actor, runtime: Runtime) -> tuple[str, str]:
    connection = await connect_as(client, actor, USER, KIND)
    device = await import_device(client, actor, connection, USER, KIND, sync_historical_days=1)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed", run
    return connection, device


async def _day_steps(client, actor, device: str, start: datetime) -> float:
    params = {
        "data_type": "steps",
        "interval": "1d",
        "agg": "sum",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(days=1)).isoformat(),
    }
    answer = await client.get(f"/api/v1/devices/{device}/data/aggregate", params=params,
                              headers=actor.headers)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return sum(b["value"] or 0 for b in answer.json()["buckets"])


async def test_the_endpoint_check_needs_the_secret(client, google) -> None:
    check = {"type": "verification"}
    assert (await client.post(HOOK, json=check, headers=AUTH)).status_code == 201
    assert (await client.post(HOOK, json=check, headers={"authorization": SECRET})).status_code \
        == 201  # fmt: skip
    problem(await client.post(HOOK, json=check), 401)
    problem(await client.post(HOOK, json=check, headers={"authorization": "Bearer no"}), 401)


async def test_an_upsert_queues_a_webhook_sync_from_its_interval(
    client, admin, google, runtime: Runtime
) -> None:
    _, device = await _synced(client, admin, runtime)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    body = notification(USER, "UPSERT", "steps", start, start + timedelta(minutes=15))
    answer = await _post(client, google, body)  # Google sends no Authorization then
    assert answer.status_code == 204, answer.text
    (_, hinted) = await runs(runtime, device)
    assert (hinted.sync_type, hinted.status, hinted.data_types) == ("webhook", "queued", ["steps"])
    assert hinted.since == start
    ignored = notification(USER, "UPSERT", "floors", start, start + timedelta(minutes=5))
    assert (await _post(client, google, ignored, AUTH)).status_code == 204
    assert len(await runs(runtime, device)) == 2  # a type not synced queues nothing
    await runtime.sync.run_once()
    assert (await runs(runtime, device))[-1].status == "completed"


async def test_a_delete_removes_the_readings_of_its_interval(
    client, admin, google, runtime: Runtime
) -> None:
    _, device = await _synced(client, admin, runtime)
    before = await readings(runtime, device, "steps")
    last = before[-4:]  # the last hour: a later sync's overlap fetches it again
    day = datetime.combine(last[0].astimezone(UTC).date(), datetime.min.time(), UTC)
    total = await _day_steps(client, admin, device, day)
    start, end = last[0], last[-1] + timedelta(minutes=15)
    gone = [t for t in before if start <= t < end]
    assert gone == last
    google.delete("steps", start, end)
    answer = await _post(client, google, notification(USER, "DELETE", "steps", start, end))
    assert answer.status_code == 204, answer.text
    assert await readings(runtime, device, "steps") == [t for t in before if t not in gone]
    assert await _day_steps(client, admin, device, day) < total  # the rollups rebuilt
    assert len(await runs(runtime, device)) == 1  # a delete fetches nothing
    log = await client.get(f"{API}/access-log", params={"device_id": device},
                           headers=admin.headers)  # fmt: skip
    assert ("vendor:google_health", "delete", "steps deleted at the vendor") in [
        (e["actor"], e["action"], e["what"]) for e in log.json()["items"]]  # fmt: skip
    manual = await client.post(f"/api/v1/devices/{device}/sync", headers=admin.headers)
    assert manual.status_code == 202, manual.text
    await runtime.sync.run_once()
    (*_, resynced) = await runs(runtime, device)
    assert resynced.status == "completed" and resynced.records_processed > 0
    assert not [t for t in await readings(runtime, device, "steps") if t in gone]  # not back


async def test_refused_deliveries_change_nothing(client, admin, google, runtime) -> None:
    _, device = await _synced(client, admin, runtime)
    before = await readings(runtime, device, "steps")
    start = before[0]
    body = notification(USER, "DELETE", "steps", start, start + timedelta(hours=1))
    signed, signature = google.signed(body)
    plain = {"content-type": "application/json"}

    unsigned = problem(await client.post(HOOK, content=signed, headers={**plain, **AUTH}), 401)
    assert unsigned["type"].endswith("bad-signature") and "no signature" in unsigned["detail"]
    forger = GoogleHealth()  # a key of its own, not in Google's keyset
    _, forged = forger.signed(body)
    refused = problem(await client.post(HOOK, content=signed, headers={**plain, **forged}), 401)
    assert "does not match" in refused["detail"]
    tampered = signed.replace(b'"DELETE"', b'"UPSERT"')
    problem(await client.post(HOOK, content=tampered, headers={**plain, **signature}), 401)
    garbled = {SIGNATURE_HEADER: "not base64!"}
    problem(await client.post(HOOK, content=signed, headers={**plain, **garbled}), 401)
    wrong = {"authorization": "Bearer not-the-secret"}  # signed, but a wrong secret
    problem(await client.post(HOOK, content=signed, headers={**plain, **signature, **wrong}),
            401)  # fmt: skip
    assert await readings(runtime, device, "steps") == before
    assert len(await runs(runtime, device)) == 1

    problem(await _post(client, google, {"not": "a list"}), 400)
    google_other = notification("someone-else", "DELETE", "steps", start,
                                start + timedelta(hours=1))  # fmt: skip
    assert (await _post(client, google, google_other)).status_code == 204
    assert await readings(runtime, device, "steps") == before
    assert (await _post(client, google, body)).status_code == 204  # the genuine one
    assert await readings(runtime, device, "steps") == [
        t for t in before if t >= start + timedelta(hours=1)
    ]


async def test_a_rotated_key_is_fetched_once(client, app, admin, google, runtime) -> None:
    clock = [1000.0]
    GOOGLE_HEALTH_KEYS.put(app, SignatureKeys(clock=lambda: clock[0]))
    _, device = await _synced(client, admin, runtime)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    hint = notification(USER, "UPSERT", "steps", start, start + timedelta(minutes=15))
    assert (await _post(client, google, hint)).status_code == 204
    clock[0] += REFETCH_S
    assert (await _post(client, google, hint)).status_code == 204
    assert google.keyset_fetches == 1  # kept between notifications
    google.rotate(keep_old=False)  # Google signs with a new key, the old one withdrawn
    rotated = await _post(client, google, hint)
    assert rotated.status_code == 204, rotated.text
    assert google.keyset_fetches == 2  # the unknown key id fetched the keyset again
    clock[0] += REFRESH_S  # an hour on: fetched again, whatever the key
    assert (await _post(client, google, hint)).status_code == 204
    assert google.keyset_fetches == 3
    _, forged = GoogleHealth().signed(hint)  # another unknown key id, right after
    body, _ = google.signed(hint)
    problem(
        await client.post(
            HOOK, content=body, headers={"content-type": "application/json", **forged}
        ),
        401,
    )
    assert google.keyset_fetches == 3  # not fetched again at a forger's bidding
    (_, hinted) = await runs(runtime, device)
    assert hinted.sync_type == "webhook"


async def test_keys_that_cannot_be_fetched_answer_503(client, admin, google, settings,
                                                      runtime) -> None:  # fmt: skip
    await _synced(client, admin, runtime)
    settings.google_health.webhook_keyset_url += ".missing"  # the keyset answers 404
    hint = notification(USER, "UPSERT", "steps", datetime.now(UTC) - timedelta(hours=1),
                        datetime.now(UTC))  # fmt: skip
    answer = await _post(client, google, hint)
    problem(answer, 503)
    assert answer.headers["retry-after"] == "60"  # Google delivers it again later


async def test_without_signature_checks_the_secret_alone_decides(
    client, admin, google, settings, runtime
) -> None:
    settings.google_health.webhook_verify_signature = False
    _, device = await _synced(client, admin, runtime)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    body = notification(USER, "UPSERT", "steps", start, start + timedelta(minutes=15))
    problem(await client.post(HOOK, json=body), 401)
    assert (await client.post(HOOK, json=body, headers=AUTH)).status_code == 204
    assert google.keyset_fetches == 0
    (_, hinted) = await runs(runtime, device)
    assert hinted.sync_type == "webhook"
