from __future__ import annotations

from conftest import Actor, problem
from fieldwatch.db.dependencies import ENGINE


async def test_health_reports_the_database(client, backend):
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    db = body["checks"]["database"]
    assert db["status"] == "ok" and db["schema"] == "current"
    assert db["backend"] == ("sqlite" if backend.name == "sqlite" else "postgresql")


async def test_health_fails_when_the_database_is_gone(app, client, runtime, backend, tmp_path):
    from fieldwatch.db.engine import create_engine

    unopenable = tmp_path / "a-directory.db"
    unopenable.mkdir()
    gone = create_engine(
        f"sqlite:///{unopenable}"
        if backend.name == "sqlite"
        else "postgresql://nobody@127.0.0.1:1/none"
    )
    ENGINE.put(app, gone)  # the engine the app's routes use
    try:
        r = await client.get("/health")
    finally:
        await gone.dispose()
        ENGINE.put(app, runtime.engine)
    assert r.status_code == 503 and r.json()["checks"]["database"]["status"] == "error"


async def test_metrics_use_route_templates(client, admin: Actor):
    await client.get("/api/v1/devices", headers=admin.headers)
    await client.get("/api/v1/devices/00000000-0000-0000-0000-000000000000", headers=admin.headers)
    text = (await client.get("/metrics")).text
    assert (
        'fieldwatch_http_requests_total{method="GET",route="/api/v1/devices",status="200"} 1.0'
        in text
    )
    assert 'route="/api/v1/devices/{device_id}",status="404"' in text
    assert "00000000-0000" not in text


async def test_openapi_and_docs(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/devices",
        "/api/v1/devices/{device_id}/deploy",
        "/api/v1/inventory/summary",
        "/api/v1/auth/login",
        "/api/v1/devices/import",
    ):
        assert path in paths
    assert "text/csv" in paths["/api/v1/devices/import"]["post"]["requestBody"]["content"]
    assert (await client.get("/docs")).status_code == 200


async def test_unknown_routes_and_methods_are_problems(client):
    problem(await client.get("/api/v1/nothing-here"), 404)
    problem(await client.delete("/api/v1/auth/login"), 405)


async def test_request_id_is_echoed_and_generated(client):
    r = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert (
        r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32
    )


async def test_malformed_json_body_is_a_clear_error(client, operator: Actor):
    r = await client.post(
        "/api/v1/devices",
        content=b"{not json",
        headers={**operator.headers, "content-type": "application/json"},
    )
    body = problem(r, 422)
    assert body["errors"][0]["type"] == "json_invalid"
