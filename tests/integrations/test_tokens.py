"""Tokens for syncs: refreshed once however many ask at once, a lost grant only on
invalid_grant, a vendor's trouble never costs the grant."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.connections.tokens import (
    ConnectionUnusable,
    RefreshFailed,
    TokenSource,
)
from fieldwatch.integrations.models import Connection
from fieldwatch.runtime import Runtime
from integration_helpers import connect, refreshes


def source(runtime: Runtime, owner: str) -> TokenSource:
    return TokenSource(runtime.uow, runtime.settings, runtime.key_ring, owner=owner)


async def _expire(runtime: Runtime, connection_id: uuid.UUID) -> None:
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(Connection).where(Connection.id == connection_id)
            .values(token_expires_at=utcnow() - timedelta(minutes=1))
        )  # fmt: skip
        await uow.commit()


async def _row(runtime: Runtime) -> Connection:
    async with runtime.uow() as uow:
        row = await uow.session.scalar(select(Connection))
    assert row is not None
    return row


async def _connected(client, operator, runtime: Runtime) -> uuid.UUID:
    answer = await connect(client, operator)
    assert answer.status_code == 200
    return uuid.UUID(answer.json()["id"])


async def test_a_fresh_token_is_used_as_it_is(client, operator, oura, runtime) -> None:
    cid = await _connected(client, operator, runtime)
    token = await source(runtime, "p1").access_token(cid)
    assert token["access_token"] in oura.grants and refreshes(oura) == 0


async def test_concurrent_refreshes_ask_the_vendor_once(client, operator, oura, runtime) -> None:
    cid = await _connected(client, operator, runtime)
    before = await _row(runtime)
    await _expire(runtime, cid)
    one, two = source(runtime, "process-1"), source(runtime, "process-2")
    tokens = await asyncio.gather(*(s.access_token(cid) for s in (one, two, one, two, one)))
    assert refreshes(oura) == 1  # single-use refresh tokens: a second refresh would fail
    assert len({t["access_token"] for t in tokens}) == 1
    after = await _row(runtime)
    assert (after.status, after.refreshing_by) == ("active", None)
    assert after.token_version == before.token_version + 1
    assert after.token_expires_at is not None and after.token_expires_at > utcnow()


async def test_a_revoked_grant_needs_authorising_again(client, operator, oura, runtime) -> None:
    cid = await _connected(client, operator, runtime)
    await _expire(runtime, cid)
    oura.revoke(oura.users[0])
    with pytest.raises(ConnectionUnusable) as caught:
        await source(runtime, "p1").access_token(cid)
    assert caught.value.status == "auth_required"
    row = await _row(runtime)
    assert (row.status, row.credentials, row.refreshing_by) == ("auth_required", None, None)
    assert "invalid_grant" in (row.status_reason or "")
    with pytest.raises(ConnectionUnusable):  # and stays so without asking the vendor again
        await source(runtime, "p2").access_token(cid)
    assert refreshes(oura) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_vendor_trouble_keeps_the_grant(client, operator, oura, runtime, status) -> None:
    cid = await _connected(client, operator, runtime)
    await _expire(runtime, cid)
    oura.fail("/oauth/token", status=status, retry_after=5 if status == 429 else None)
    with pytest.raises(RefreshFailed):
        await source(runtime, "p1").access_token(cid)
    row = await _row(runtime)
    assert (row.status, row.refreshing_by) == ("active", None)  # the lease is given back
    token = await source(runtime, "p1").access_token(cid)  # the next try succeeds
    assert token["access_token"] in oura.grants
