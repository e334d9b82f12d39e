"""A connect started from the console that ends without a connection (the account holder
denies consent, the request expired, the vendor refuses the code) comes back to the
connections page with a readable sentence; the API without ``return_to`` keeps its
problem documents. A connection made through the callback names who started it."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
from sqlalchemy import select, update

from conftest import Actor, problem
from console_helpers import plain, section
from console_sync_helpers import BASE, console_as, oura
from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.models import Connection, OAuthState
from fieldwatch.runtime import Runtime
from integration_helpers import consent
from standins.vendor import Vendor

__all__ = ["oura"]  # the fixture


CALLBACK = "/api/v1/integrations/oura/callback"


async def _start(client: httpx.AsyncClient, csrf: str) -> dict[str, str]:
    """Connect Oura from the console; what the vendor's consent page sends back."""
    started = await client.post(f"{BASE}/oura/connect", data={"csrf_token": csrf})
    assert started.status_code == 303, started.text
    return await consent(started.headers["location"])


async def _back(client: httpx.AsyncClient, params: dict[str, str]) -> tuple[dict, str]:
    """The callback's redirect (its query) and the sentence the page then shows."""
    answer = await client.get(CALLBACK, params=params)
    assert answer.status_code == 303, answer.text
    target = urlparse(answer.headers["location"])
    assert target.path == f"{BASE}/connections"
    shown = await client.get(answer.headers["location"])
    assert shown.status_code == 200
    return parse_qs(target.query), plain(section(shown.text, "problem"))


async def test_a_denied_consent_comes_back_to_the_connections_with_a_sentence(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor, runtime: Runtime
) -> None:
    csrf = await console_as(client, operator)
    back = await _start(client, csrf)
    query, said = await _back(client, {"state": back["state"], "error": "access_denied"})
    assert query == {"error": ["access_denied"], "connector": ["oura"],
                     "vendor_error": ["access_denied"]}  # fmt: skip
    assert said == "Oura API v2: the account holder did not grant access, so nothing was connected."
    async with runtime.uow() as uow:
        assert (await uow.session.scalar(select(Connection))) is None


async def test_an_expired_request_and_a_refused_code_come_back_too(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor, runtime: Runtime
) -> None:
    csrf = await console_as(client, operator)
    back = await _start(client, csrf)
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await uow.commit()
    query, said = await _back(client, back)
    assert query["error"] == ["expired"]
    assert (
        said == "The authorisation request expired or was used already: connect Oura API v2 again."
    )

    back = await _start(client, csrf)
    oura.codes.clear()  # the vendor no longer knows the code: invalid_grant
    query, said = await _back(client, back)
    assert (query["error"], query["vendor_error"]) == (["refused"], ["invalid_grant"])
    assert said == "Oura API v2 refused the authorisation (invalid_grant): connect again."
    async with runtime.uow() as uow:
        assert (await uow.session.scalar(select(Connection))) is None


async def test_the_page_never_echoes_what_the_address_says(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor
) -> None:
    await console_as(client, operator)
    page = await client.get(
        f"{BASE}/connections",
        params={"error": "denied", "connector": "<b>x</b>", "vendor_error": "<script>1</script>"},
    )
    assert "<script>1" not in page.text and "&lt;script" not in page.text
    assert (
        plain(section(page.text, "problem"))
        == "The vendor did not grant access: nothing was connected."
    )
    unknown = await client.get(f"{BASE}/connections", params={"error": "<i>made-up</i>"})
    assert 'id="problem"' not in unknown.text and "made-up" not in unknown.text


async def test_api_callers_keep_the_problem_and_the_actor_is_named(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor
) -> None:
    started = await client.post("/api/v1/integrations/oura/auth", json={},
                                headers=operator.headers)  # fmt: skip
    back = await consent(started.json()["authorization_url"])
    denied = await client.get(CALLBACK, params={"state": back["state"], "error": "access_denied"})
    assert problem(denied, 400)["vendor_error"] == "access_denied"

    started = await client.post("/api/v1/integrations/oura/auth", json={},
                                headers=operator.headers)  # fmt: skip
    made = await client.get(CALLBACK, params=await consent(started.json()["authorization_url"]))
    assert made.status_code == 200, made.text
    assert made.json()["created_by"] == f"user:{operator.email}"


async def test_each_connect_button_names_its_connector(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor
) -> None:
    await console_as(client, operator)
    page = await client.get(BASE)
    names = {
        kind: plain(section(page.text, f"connect-{kind}"))
        for kind in ("google_health", "google_fit", "health_connect", "oura")
    }
    assert names == {
        "google_health": "Connect Google (Google Health API)",
        "google_fit": "Connect Google (Google Fit)",
        "health_connect": "Connect Google (Android Health Connect (companion app upload))",
        "oura": "Connect Oura (Oura API v2)",
    }
    assert '<span class="visually-hidden"> (Google Health API)</span>' in page.text


async def test_authorising_again_while_the_vendor_is_unreachable_keeps_the_connection(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor, runtime: Runtime
) -> None:
    """Re-linking a connection that needs authorising: the vendor's token endpoint fails
    (503), the page says so and offers "Authorise again" still; the next try re-links the
    same connection (no second one) and makes it active."""
    csrf = await console_as(client, operator)
    made = await client.get(CALLBACK, params=await _start(client, csrf))
    assert made.status_code == 303
    async with runtime.uow() as uow:
        connection = await uow.session.scalar(select(Connection))
        assert connection is not None
        connection.status, connection.status_reason = "auth_required", "invalid_grant"
        await uow.commit()
    page = await client.get(f"{BASE}/connections")
    assert f'id="reauth-{connection.id}"' in page.text

    async def again() -> dict[str, str]:
        started = await client.post(
            f"{BASE}/oura/connect",
            data={"csrf_token": csrf, "connection_id": str(connection.id)},
        )
        assert started.status_code == 303, started.text
        return await consent(started.headers["location"])

    back = await again()
    oura.fail("/oauth/token", status=503)
    query, said = await _back(client, back)
    assert query["error"] == ["unreachable"]
    assert said == "Oura API v2 could not be reached: try connecting again in a moment."
    page = await client.get(f"{BASE}/connections")
    assert f'id="reauth-{connection.id}"' in page.text
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(Connection))).all()
    assert [(r.id, r.status) for r in rows] == [(connection.id, "auth_required")]

    answer = await client.get(CALLBACK, params=await again())
    assert answer.status_code == 303
    assert urlparse(answer.headers["location"]).query.endswith("status=active")
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(Connection))).all()
    assert [(r.id, r.status, r.status_reason) for r in rows] == [(connection.id, "active", None)]
