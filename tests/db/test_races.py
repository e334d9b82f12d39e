"""Identical requests at once: exactly one wins, the others get 409 (or, for an
idempotency key, the same command); an update of something deleted meanwhile is a 404.
Never a 500."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx

from conftest import Actor, create_device, problem

ROUNDS = 5
AT_ONCE = 12


async def at_once(n: int, send: Any) -> list[httpx.Response]:
    return list(await asyncio.gather(*(send() for _ in range(n))))


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def test_same_new_member_at_once(client, admin: Actor) -> None:
    for _ in range(ROUNDS):
        email = f"new-{uuid.uuid4().hex[:8]}@acme.example.com"
        body = {"email": email, "role": "viewer"}
        rs = await at_once(
            AT_ONCE, lambda b=body: client.post("/api/v1/members", json=b, headers=admin.headers)
        )
        assert statuses(rs) == {201: 1, 409: AT_ONCE - 1}, statuses(rs)
        for r in rs:
            if r.status_code == 409:
                assert email in problem(r, 409)["detail"] or "email" in r.json()["detail"]
        r = await client.get("/api/v1/members", headers=admin.headers)
        assert [m["email"] for m in r.json()["items"]].count(email) == 1


async def test_same_new_workspace_at_once(client, admin: Actor) -> None:
    for _ in range(ROUNDS):
        body = {"name": f"site-{uuid.uuid4().hex[:8]}"}
        rs = await at_once(
            AT_ONCE,
            lambda b=body: client.post("/api/v1/workspaces", json=b, headers=admin.headers),
        )
        assert statuses(rs) == {201: 1, 409: AT_ONCE - 1}, statuses(rs)
        assert all("name" in problem(r, 409)["detail"] for r in rs if r.status_code == 409), [
            r.text for r in rs
        ]


async def test_same_idempotency_key_at_once(client, admin: Actor) -> None:
    device = await create_device(client, admin)
    url = f"/api/v1/devices/{device['id']}/commands"
    for _ in range(ROUNDS):
        body = {"command": "reboot", "params": {}, "idempotency_key": uuid.uuid4().hex}
        rs = await at_once(AT_ONCE, lambda b=body: client.post(url, json=b, headers=admin.headers))
        assert statuses(rs) == {201: 1, 200: AT_ONCE - 1}, [r.text for r in rs]
        assert len({r.json()["command_id"] for r in rs}) == 1
    r = await client.get(url, headers=admin.headers)
    assert r.json()["total"] == ROUNDS


async def test_same_new_type_heartbeat_at_once(client, admin: Actor) -> None:
    for n in range(ROUNDS):
        url = f"/api/v1/device-types/kind-{uuid.uuid4().hex[:6]}/heartbeat"
        body = {"heartbeat_interval_s": 30 + n, "offline_tolerance": 3}
        rs = await at_once(
            AT_ONCE, lambda u=url, b=body: client.put(u, json=b, headers=admin.headers)
        )
        assert statuses(rs) == {200: AT_ONCE}, [r.text for r in rs]
        r = await client.get(url, headers=admin.headers)
        assert r.json()["heartbeat_interval_s"] == 30 + n


async def test_member_changed_while_removed(client, admin: Actor) -> None:
    for _ in range(ROUNDS):
        body = {"email": f"m-{uuid.uuid4().hex[:8]}@acme.example.com", "role": "viewer"}
        r = await client.post("/api/v1/members", json=body, headers=admin.headers)
        user_id = r.json()["user_id"]
        url = f"/api/v1/members/{user_id}"
        rs = list(
            await asyncio.gather(
                *(
                    client.patch(url, json={"role": "operator"}, headers=admin.headers)
                    for _ in range(AT_ONCE - 1)
                ),
                client.delete(url, headers=admin.headers),
            )
        )
        patches, (delete,) = rs[:-1], rs[-1:]
        assert delete.status_code == 204, delete.text
        assert set(statuses(patches)) <= {200, 404}, statuses(patches)
        for r in patches:
            if r.status_code == 404:
                problem(r, 404)
        r = await client.get("/api/v1/members", headers=admin.headers)
        assert user_id not in {m["user_id"] for m in r.json()["items"]}
