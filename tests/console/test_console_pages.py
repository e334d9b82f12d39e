"""Every console page in a real browser against a real server, as an admin and as a
viewer: axe-core finds nothing serious in the light and the dark theme, a phone-width
screen does not scroll sideways, one ``<h1>`` and a title of its own per page, a name
on every control; and a keyboard-only walk through each family of pages."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Page, expect

from conftest import Actor, Factory, Served, create_device
from console_helpers import browser, page, serious_violations, sign_in
from fieldwatch.runtime import Runtime
from telemetry_helpers import device_with_token, iso, recent

__all__ = ["browser", "page"]  # the fixtures

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
WAIT_MS = 5000


@dataclass
class Fleet:
    device_id: str
    rule_id: str
    webhook_id: str


async def _ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


async def populate(served: Served, admin: Actor, runtime: Runtime) -> Fleet:
    """A workspace with something on every page: devices in several statuses, a device
    with readings, an alert, commands, a desired configuration, tokens and an audit log;
    a rule, a webhook, an API key."""
    http, h = served.http, admin.headers
    rule = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30,
            "severity": "critical", "duration_s": 0}  # fmt: skip
    rule = await _ok(await http.post("/api/v1/alert-rules", json=rule, headers=h), 201)
    device, token = await device_with_token(
        http, admin, name="Boiler room sensor with a long name", serial_number="SN-QA-0001",
        specs={"range": "-40..125 °C", "accuracy": 0.5},
    )  # fmt: skip
    did = device["id"]
    deploy = {"location": "Hall 2"}
    await _ok(await http.put(f"/api/v1/devices/{did}/deploy", json=deploy, headers=h))
    points = [(recent(600 - 60 * i), 20 + i) for i in range(10)] + [(recent(0), 35)]
    values = [{"timestamp": iso(t), "value": v, "unit": "celsius"} for t, v in points]
    body = {"data_type": "temperature", "values": values}
    await _ok(await http.post(f"/api/v1/devices/{did}/data", json=body, headers=token))
    command = {"command": "reboot", "params": {"delay_s": 5}}
    await _ok(await http.post(f"/api/v1/devices/{did}/commands", json=command, headers=h), 201)
    config = {"interval_s": 60, "unit": "celsius"}
    await _ok(await http.put(f"/api/v1/devices/{did}/config", json=config, headers=h))
    for n in range(3):
        await create_device(http, admin, name=f"Spare {n}", serial_number=f"SN-QA-10{n}")
    runtime.settings.webhook_allow_private = True  # a receiver on this machine
    webhook = {"url": "http://127.0.0.1:9/fieldwatch", "event_types": ["alert.raised"],
               "description": "On-call pager"}  # fmt: skip
    webhook = await _ok(await http.post("/api/v1/webhooks", json=webhook, headers=h), 201)
    key = {"name": "ci-bot", "role": "operator"}
    await _ok(await http.post("/api/v1/api-keys", json=key, headers=h), 201)
    for _ in range(100):  # the last reading's alert is raised
        if (await _ok(await http.get("/api/v1/alerts", headers=h)))["items"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no alert was raised")
    return Fleet(did, rule["id"], webhook["id"])


def pages_of(fleet: Fleet, admin: bool) -> list[str]:
    pages = [
        "/console/",
        f"/console/devices/{fleet.device_id}",
        "/console/alerts",
        "/console/alert-rules",
        f"/console/alert-rules/{fleet.rule_id}",
        "/console/webhooks",
        f"/console/webhooks/{fleet.webhook_id}",
    ]
    return pages + (["/console/admin"] if admin else [])


async def settled(page: Page) -> None:
    """Wait for the parts a page loads after it is shown (htmx) and for its live state."""
    await expect(page.locator("[aria-busy=true]")).to_have_count(0, timeout=WAIT_MS)
    live = page.locator("#live")
    if await live.count():
        await expect(live).to_have_text("Live", timeout=WAIT_MS)


UNNAMED_CONTROLS = """() => {
  const named = (el) => {
    if (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")) return true;
    if ([...(el.labels || [])].some((l) => l.textContent.trim())) return true;
    if (el.tagName === "BUTTON" && el.textContent.trim()) return true;
    if (el.type === "submit" || el.type === "button") return Boolean(el.value);
    return Boolean(el.getAttribute("title"));
  };
  return [...document.querySelectorAll("input, select, textarea, button")]
    .filter((el) => el.type !== "hidden" && !named(el))
    .map((el) => el.outerHTML.slice(0, 120));
}"""


FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  const ids = (window.focusWalk = window.focusWalk || new WeakMap());
  if (!ids.has(el)) ids.set(el, Math.random());
  return {
    id: ids.get(el),
    what: el.outerHTML.slice(0, 100),
    visible: el.matches(":focus-visible") && style.outlineStyle !== "none"
      && parseFloat(style.outlineWidth) >= 2 && r.width > 0 && r.height > 0,
  };
}"""


async def walk_focus(page: Page, limit: int = 150) -> list[str]:
    """Tab through the page from its top: the controls whose focus is not visible (an
    outline on ``:focus-visible``), or an empty list."""
    await page.locator("body").focus()
    unseen: list[str] = []
    seen: list[float] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        now = await page.evaluate(FOCUSED)
        if now is not None and seen and now["id"] == seen[-1]:
            continue  # the next part of the same control (a date's day, month, year)
        if now is None or now["id"] in seen:
            break
        seen.append(now["id"])
        if not now["visible"]:
            unseen.append(now["what"])
    return unseen


async def check_page(page: Page, url: str) -> dict[str, Any]:
    """The checks of one page; returns what was found wrong (an empty dict: nothing)."""
    found: dict[str, Any] = {}
    await page.set_viewport_size(DESKTOP)
    await page.emulate_media(color_scheme="light")
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    await settled(page)
    if (h1 := await page.locator("h1").count()) != 1:
        found["h1"] = h1
    if unnamed := await page.evaluate(UNNAMED_CONTROLS):
        found["unnamed controls"] = unnamed
    if unseen := await walk_focus(page):
        found["focus not visible"] = unseen
    if light := await serious_violations(page):
        found["axe light"] = light
    await page.emulate_media(color_scheme="dark")
    if dark := await serious_violations(page):
        found["axe dark"] = dark
    await page.set_viewport_size(PHONE)
    wide = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if wide[0] > wide[1]:
        found["phone overflow"] = wide
    return found


async def check_all(page: Page, served: Served, fleet: Fleet, admin: bool) -> None:
    titles: dict[str, str] = {}
    problems: dict[str, Any] = {}
    for path in pages_of(fleet, admin):
        if found := await check_page(page, served.base_url + path):
            problems[path] = found
        titles[path] = await page.title()
    assert problems == {}, json.dumps(problems, indent=1)
    assert len(set(titles.values())) == len(titles), titles


async def test_every_page_as_an_admin_and_as_a_viewer(
    served: Served, page: Page, admin: Actor, factory: Factory, runtime: Runtime
):
    fleet = await populate(served, admin, runtime)
    await sign_in(page, served, admin)
    await check_all(page, served, fleet, admin=True)
    viewer = await factory.user("viewer")
    await page.context.clear_cookies()
    await sign_in(page, served, viewer)
    await check_all(page, served, fleet, admin=False)
