"""``fieldwatch status``: asks a running server how it is (``GET /health``).

The health report is read loosely: every component it names is shown with its status
and details, whatever the components are (database, MQTT, Redis, RabbitMQ, …)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer

from fieldwatch.agent.cli import default_server
from fieldwatch.cli.errors import CliError, load_settings
from fieldwatch.cli.output import print_json

#: Overall statuses that mean healthy (exit code 0).
OK_STATUSES = {"ok", "up", "pass", "healthy"}


def _components(body: dict[str, Any]) -> dict[str, Any]:
    """The named components of a health report (``checks`` or ``components``, as a
    mapping or a list of objects with a ``name``)."""
    found: dict[str, Any] = {}
    for key in ("checks", "components"):
        value = body.get(key)
        if isinstance(value, dict):
            found.update(value)
        elif isinstance(value, list):
            found.update(
                {str(c.get("name", i)): c for i, c in enumerate(value) if isinstance(c, dict)}
            )
    return found


def _devices_online(body: dict[str, Any], components: dict[str, Any]) -> object:
    for holder in (body, body.get("devices"), components.get("devices")):
        if isinstance(holder, dict):
            for key in ("devices_online", "online"):
                if key in holder:
                    return holder[key]
    return None


def _online_from_metrics(target: str, timeout: float) -> int | None:
    """Devices online across the installation, from the server's ``/metrics``
    (``fieldwatch_devices{connectivity="online"}``); None when it does not say."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{target}/metrics", timeout=timeout).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "fieldwatch_devices" and (
                    sample.labels.get("connectivity") == "online"
                ):
                    return int(sample.value)
    except (httpx.HTTPError, ValueError):
        return None
    return None


def _component_line(name: str, value: Any) -> str:
    if not isinstance(value, dict):
        return f"  {name:<12} {value}"
    state = str(value.get("status", "?"))
    details = ", ".join(
        f"{k}={v}"
        for k, v in value.items()
        if k not in {"status", "name"} and isinstance(v, str | int | float | bool)
    )
    return f"  {name:<12} {state:<9} {details}".rstrip()


def _fetch(url: str, timeout: float) -> httpx.Response:
    try:
        return httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise CliError(
            f"Cannot reach Fieldwatch at {url} ({type(exc).__name__}).\n"
            "Is `fieldwatch serve` running there? Pass --url for another address."
        ) from exc


def status(
    url: Annotated[
        str | None,
        typer.Option(help="The server; default: where `fieldwatch serve` listens (settings)"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the health report")] = False,
) -> None:
    """Is the server up, and how are its parts (database, MQTT, Redis, RabbitMQ, …)?
    Exit code 0 when it reports itself healthy, 1 otherwise."""
    target = (url or default_server(load_settings())).rstrip("/")
    response = _fetch(target, timeout)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CliError(f"{target}/health answered {response.status_code} without a health report.")
    if _devices_online(body, {}) is None:
        body["devices_online"] = _online_from_metrics(target, timeout)
    if as_json:
        print_json(body)
    else:
        overall = body.get("status", "unknown")
        version = body.get("version")
        typer.echo(f"Fieldwatch{f' {version}' if version else ''} at {target}: {overall}")
        components = _components(body)
        for name, value in components.items():
            typer.echo(_component_line(name, value))
        online = _devices_online(body, components)
        shown = "not reported by this server" if online is None else online
        typer.echo(f"  {'devices':<12} online: {shown}")
    if response.status_code != 200 or str(body.get("status", "")).lower() not in OK_STATUSES:
        raise typer.Exit(1)
