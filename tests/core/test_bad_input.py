"""Inputs that used to crash a route: each is a clear 4xx problem now, on both databases."""

from __future__ import annotations

import pytest

from conftest import Actor, create_device, problem

HUGE = str(2**63)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/alerts?offset={HUGE}",
        f"/api/v1/monitoring/alerts?offset={HUGE}",
        f"/api/v1/devices?offset={HUGE}",
        f"/api/v1/devices/{{device}}/commands?offset={HUGE}",
        f"/api/v1/devices/{{device}}/logs?before_id={HUGE}",
        f"/api/v1/devices/{{device}}/connectivity?before_id={HUGE}",
    ],
)
async def test_offsets_and_cursors_are_bounded(client, admin: Actor, path: str) -> None:
    device = await create_device(client, admin)
    r = await client.get(path.format(device=device["id"]), headers=admin.headers)
    body = problem(r, 422)
    assert any(e["field"].endswith(("offset", "before_id")) for e in body["errors"])


async def test_import_of_json_that_is_not_utf8(client, admin: Actor) -> None:
    for content_type in ("application/json", "text/csv"):
        r = await client.post(
            "/api/v1/devices/import?dry_run=true",
            content=bytes([0x63, 0x62, 0x4C, 0xFC, 0xD3]),
            headers={**admin.headers, "Content-Type": content_type},
        )
        assert "UTF-8" in problem(r, 400)["detail"]


async def test_import_of_json_nested_too_deeply(client, admin: Actor) -> None:
    r = await client.post(
        "/api/v1/devices/import?dry_run=true",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert problem(r, 400)["detail"]
