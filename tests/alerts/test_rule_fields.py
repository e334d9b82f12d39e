"""A rule's scope checks name the field they are about (``scope_value``), so that a form
can show the message next to it."""

from __future__ import annotations

import pytest

from conftest import Actor, problem

BASE = {"name": "x", "metric": "t", "operator": ">", "threshold": 1}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": "device"}, "scope 'device' needs a scope_value"),
        ({"scope": "device_type", "scope_value": ""}, "scope 'device_type' needs a scope_value"),
        ({"scope": "all", "scope_value": "sensor"}, "scope 'all' takes no scope_value"),
        ({"scope": "device", "scope_value": "pump-7"}, "scope 'device' needs a device id"),
    ],
)
async def test_scope_problems_are_reported_on_scope_value(client, operator: Actor, fields, message):
    r = await client.post("/api/v1/alert-rules", json={**BASE, **fields}, headers=operator.headers)
    [error] = problem(r, 422)["errors"]
    assert error["field"] == "scope_value"
    assert error["message"].startswith(message)
