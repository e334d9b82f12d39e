"""Connecting a vendor account: the catalogue, OAuth code + PKCE against a stand-in of
the vendor, tokens sealed at rest, the state good once."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from conftest import problem
from fieldwatch.integrations.models import Connection, OAuthState
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect, consent

STANDIN_USERS = ["oura-user-7"]


async def test_catalogue_shows_what_can_be_connected_and_why_not(client, admin, oura) -> None:
    answer = await client.get(API, headers=admin.headers)
    assert answer.status_code == 200
    by_type = {i["type"]: i for i in answer.json()["items"]}
    assert by_type["oura"]["connectable"] and by_type["oura"]["configured"]
    assert by_type["oura"]["quotas"] == [{"requests": 5000, "per_s": 300, "scope": "user"}]
    fitbit = by_type["fitbit"]
    assert (fitbit["lifecycle"], fitbit["connectable"]) == ("sunset", False)
    assert "google_health" in fitbit["unavailable_reason"]
    assert "FIELDWATCH_GARMIN__CLIENT_ID" in by_type["garmin"]["unavailable_reason"]
    withings = by_type["withings"]  # connectable once configured
    assert (withings["configured"], withings["connectable"]) == (False, False)
    assert "FIELDWATCH_WITHINGS__CLIENT_ID" in withings["unavailable_reason"]
    assert by_type["apple_health"]["mode"] == "upload"
    assert "companion app" in by_type["apple_health"]["unavailable_reason"]


async def test_an_unconfigured_vendor_says_what_to_set(client, admin) -> None:
    answer = await client.get(API, headers=admin.headers)
    oura = next(i for i in answer.json()["items"] if i["type"] == "oura")
    assert (oura["configured"], oura["connectable"]) == (False, False)
    assert "FIELDWATCH_OURA__CLIENT_ID" in oura["unavailable_reason"]
    refused = await client.post(f"{API}/oura/auth", json={}, headers=admin.headers)
    assert "FIELDWATCH_OURA__CLIENT_SECRET" in problem(refused, 409)["detail"]


async def test_oauth_round_trip_with_pkce_seals_the_tokens(
    client, operator, oura, runtime: Runtime
) -> None:
    started = await client.post(f"{API}/oura/auth", json={}, headers=operator.headers)
    assert started.status_code == 200
    url = urlparse(started.json()["authorization_url"])
    query = parse_qs(url.query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["client_id"] == [oura.client_id] and "state" in query
    assert query["redirect_uri"] == [started.json()["redirect_uri"]]

    back = await consent(started.json()["authorization_url"])
    answer = await client.get(f"{API}/oura/callback", params=back)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["external_user_id"]) == ("active", "oura-user-7")
    assert "credentials" not in body and "access_token" not in answer.text
    # The vendor saw the verifier that matches the challenge (it checks), and our secret.
    assert oura.token_calls[-1]["grant_type"] == "authorization_code"

    async with runtime.uow() as uow:
        row = await uow.session.scalar(select(Connection))
        states = (await uow.session.scalars(select(OAuthState))).all()
    assert row is not None and row.credentials is not None and not states
    token = next(iter(oura.grants))
    assert token not in row.credentials and row.credentials.startswith("fw1.")
    opened = json.loads(
        runtime.key_ring.open(row.credentials, f"{row.workspace_id}:{row.id}:credentials")
    )
    assert opened["access_token"] == token

    replay = await client.get(f"{API}/oura/callback", params=back)
    assert "expired authorization request" in problem(replay, 400)["detail"]

    listed = await client.get(f"{API}/connections", headers=operator.headers)
    assert [c["id"] for c in listed.json()["items"]] == [body["id"]]


async def test_connecting_the_same_account_again_updates_one_connection(
    client, operator, oura
) -> None:
    first = (await connect(client, operator)).json()
    second = (await connect(client, operator)).json()
    assert first["id"] == second["id"]
    listed = await client.get(f"{API}/connections", headers=operator.headers)
    assert listed.json()["total"] == 1


async def test_refusals(client, operator, viewer, oura) -> None:
    assert problem(await client.post(f"{API}/oura/auth", json={}, headers=viewer.headers), 403)
    sunset = problem(
        await client.post(f"{API}/fitbit/auth", json={}, headers=operator.headers), 409
    )
    assert "sunset" in sunset["detail"]
    assert problem(await client.post(f"{API}/nope/auth", json={}, headers=operator.headers), 404)
    off_site = await client.post(f"{API}/oura/auth", json={"return_to": "//evil.example"},
                                 headers=operator.headers)  # fmt: skip
    assert problem(off_site, 422)
    forged = await client.get(f"{API}/oura/callback", params={"state": "x" * 40, "code": "c"})
    assert problem(forged, 400)


async def test_a_denied_consent_creates_nothing(client, operator, oura, runtime) -> None:
    started = await client.post(f"{API}/oura/auth", json={}, headers=operator.headers)
    state = parse_qs(urlparse(started.json()["authorization_url"]).query)["state"][0]
    denied = await client.get(
        f"{API}/oura/callback", params={"state": state, "error": "access_denied"}
    )
    assert problem(denied, 400)["vendor_error"] == "access_denied"
    async with runtime.uow() as uow:
        assert (await uow.session.scalar(select(Connection))) is None


async def test_return_to_sends_the_browser_back_to_the_console(client, operator, oura) -> None:
    answer = await connect(client, operator, return_to="/console/integrations")
    assert answer.status_code == 303
    target = urlparse(answer.headers["location"])
    assert target.path == "/console/integrations"
    assert parse_qs(target.query)["status"] == ["active"]


async def test_connections_are_per_workspace(client, operator, factory, oura) -> None:
    await connect(client, operator)
    other = await factory.user("admin", workspace="elsewhere")
    listed = await client.get(f"{API}/connections", headers=other.headers)
    assert listed.json()["total"] == 0


async def test_a_connection_names_who_started_it_user_or_api_key(
    client, admin, operator, oura
) -> None:
    """``created_by`` names the caller as audit rows do: the user, or the API key a
    script used (not a bare "api")."""
    made = await client.post(
        "/api/v1/api-keys", json={"name": "sync-script", "role": "operator"},
        headers=admin.headers,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    started = await client.post(f"{API}/oura/auth", json={}, headers=key)
    assert started.status_code == 200, started.text
    back = await consent(started.json()["authorization_url"])
    answer = await client.get(f"{API}/oura/callback", params=back)
    assert answer.status_code == 200, answer.text
    assert answer.json()["created_by"] == "api_key:sync-script"

    oura.users = ["oura-user-8"]
    started = await client.post(f"{API}/oura/auth", json={}, headers=operator.headers)
    back = await consent(started.json()["authorization_url"])
    answer = await client.get(f"{API}/oura/callback", params=back)
    assert answer.json()["created_by"] == f"user:{operator.email}"
