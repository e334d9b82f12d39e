"""Every console page in a real browser against a real server, as an admin and as a
viewer: axe-core finds nothing serious in the light and the dark theme, a phone-width
screen does not scroll sideways, one ``<h1>`` and a title of its own per page, a name
on every control; and a keyboard-only walk through each family of pages."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Page, expect

from artifact_helpers import Signer, register_key, uploaded
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
    group_ids: list[str]


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
    spares = []
    for n in range(3):
        tags = ["spare", "hall-2"]
        spares.append(await create_device(http, admin, name=f"Spare {n}", tags=tags,
                                          serial_number=f"SN-QA-10{n}"))  # fmt: skip
    groups = [{"name": "Spares on the shelf", "description": "Kept for swaps"},
              {"name": "Hall 2 spares", "kind": "dynamic",
               "filter": {"tags": ["spare"], "status": ["in_stock", "reserved"]}}]  # fmt: skip
    group_ids = [(await _ok(await http.post("/api/v1/device-groups", json=g, headers=h), 201))["id"]
                 for g in groups]  # fmt: skip
    members = {"device_ids": [s["id"] for s in spares[:2]]}
    await _ok(await http.post(f"/api/v1/device-groups/{group_ids[0]}/members", json=members,
                              headers=h))  # fmt: skip
    runtime.settings.webhook_allow_private = True  # a receiver on this machine
    webhook = {"url": "http://127.0.0.1:9/fieldwatch", "event_types": ["alert.raised"],
               "description": "On-call pager"}  # fmt: skip
    webhook = await _ok(await http.post("/api/v1/webhooks", json=webhook, headers=h), 201)
    signer = Signer()
    await register_key(http, admin, signer, "release builds")
    firmware = b"\x7fFIRMWARE" * 100
    await uploaded(http, admin, firmware, version="2.1.0", device_types=device["type"],
                   signature=signer.sign(firmware, "2.1.0", [device["type"]]))  # fmt: skip
    await uploaded(http, admin, b"unsigned", version="2.0.0", device_types="esp32, esp32-s3",
                   hardware_versions="rev-a, rev-b", security_version="2")  # fmt: skip
    key = {"name": "ci-bot", "role": "operator"}
    await _ok(await http.post("/api/v1/api-keys", json=key, headers=h), 201)
    for _ in range(100):  # the last reading's alert is raised
        if (await _ok(await http.get("/api/v1/alerts", headers=h)))["items"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no alert was raised")
    return Fleet(did, rule["id"], webhook["id"], group_ids)


def has_page(path: str) -> bool:
    """Whether the console serves ``path`` (a page merged from another branch later)."""
    import fieldwatch.console

    for info in pkgutil.iter_modules(fieldwatch.console.__path__):
        router = getattr(importlib.import_module(f"fieldwatch.console.{info.name}"), "router", None)
        if any(getattr(route, "path", None) == path for route in getattr(router, "routes", [])):
            return True
    return False


INTEGRATIONS = [f"/console/integrations{p}" for p in ("", "/connections", "/sync", "/quality")]
#: The integrations pages for admins alone.
INTEGRATIONS_ADMIN = [f"/console/integrations{p}" for p in ("/subscriptions", "/access-log")]


def pages_of(fleet: Fleet, admin: bool) -> list[str]:
    inventory = ["/console/inventory", "/console/inventory/stock"]
    if admin:
        inventory.append("/console/inventory/import")
    pages = [
        "/console/",
        *[path for path in inventory if has_page(path)],
        f"/console/devices/{fleet.device_id}",
        "/console/alerts",
        "/console/alert-rules",
        f"/console/alert-rules/{fleet.rule_id}",
        "/console/webhooks",
        f"/console/webhooks/{fleet.webhook_id}",
        "/console/groups",
        *[f"/console/groups/{group_id}" for group_id in fleet.group_ids],
        "/console/firmware",
        *[path for path in INTEGRATIONS if has_page(path)],
    ]
    extra = [path for path in INTEGRATIONS_ADMIN if has_page(path)] if admin else []
    return pages + extra + (["/console/admin"] if admin else [])


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


async def tab_to(page: Page, target: str, *, back: bool = False, limit: int = 200) -> None:
    """Press Tab (Shift+Tab with ``back``) until the element ``target`` (a CSS selector)
    has the focus; it must show it."""
    key = "Shift+Tab" if back else "Tab"
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement?.matches(s) ?? false", target):
            now = await page.evaluate(FOCUSED)
            assert now is not None and now["visible"], now
            return
        await page.keyboard.press(key)
    raise AssertionError(f"{target} is not reachable with {key}")


async def overview_by_keyboard(page: Page, served: Served, fleet: Fleet) -> None:
    """The skip link, the theme toggle, then a device of the changes list opened."""
    await page.goto(served.base_url + "/console/")
    await settled(page)
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await tab_to(page, "#theme-toggle")
    await page.keyboard.press("Space")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.keyboard.press("Space")
    await expect(page.locator("html")).to_have_attribute("data-theme", "light")
    await page.keyboard.press("Shift+Tab")  # back to the skip link: into the page's content
    await tab_to(page, "a.skip", back=True)
    await page.keyboard.press("Enter")
    await tab_to(page, f'#status-changes a[href$="{fleet.device_id}"]')
    # The figures are drawn again (every 10 s, and on the fleet's events): the focus stays.
    async with page.expect_response("**/console/overview/figures"):
        await page.evaluate("document.body.dispatchEvent(new Event('fleet-changed'))")
    link = page.locator(f'#status-changes a[href$="{fleet.device_id}"]')
    await expect(link).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{served.base_url}/console/devices/{fleet.device_id}")


async def device_by_keyboard(page: Page) -> None:
    """A lifecycle action, then an agent token, with the keyboard alone."""
    await settled(page)
    await tab_to(page, "#maintenance-location")
    await page.keyboard.type("Bench 1")
    await page.keyboard.press("Tab")
    await page.keyboard.type("by keyboard")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Send to maintenance")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#lifecycle-status")).to_have_text("maintenance")
    await expect(page.get_by_role("heading", name="Lifecycle")).to_be_focused()
    await expect(page.locator("#audit-log tbody tr").first).to_contain_text("by keyboard")
    await tab_to(page, "#token-name")
    await page.keyboard.type("bench")
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("New agent token")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Copy")).to_be_focused()


async def alerts_by_keyboard(page: Page, served: Served) -> None:
    """An alert ticked with Space and acknowledged with the bulk button; then cleared from
    its row, the focus landing on the outcome."""
    await page.goto(served.base_url + "/console/alerts")
    await settled(page)
    await tab_to(page, 'input[name="ids"]')
    await page.keyboard.press("Space")
    await expect(page.locator('input[name="ids"]')).to_be_checked()
    await tab_to(page, 'button[formaction$="/ack"]:not([name])', back=True)
    await page.keyboard.press("Enter")
    results = page.locator("#alerts-results")
    await expect(results).to_contain_text("Acknowledged 1 of 1 selected alert.")
    await tab_to(page, 'tbody button[formaction$="/clear"]')
    await page.keyboard.press("Enter")
    await expect(results).to_contain_text("Cleared 1 of 1 selected alert.")
    await expect(results).to_be_focused()


async def rules_by_keyboard(page: Page, served: Served) -> None:
    """A rule with a wrong threshold: the page comes back with the focus on it."""
    await page.goto(served.base_url + "/console/alert-rules")
    await tab_to(page, "#r-name")
    await page.keyboard.type("Too cold")
    await page.keyboard.press("Tab")
    await page.keyboard.type("temperature")
    await tab_to(page, "#r-threshold")
    await page.keyboard.type("cold")
    await page.keyboard.press("Enter")
    threshold = page.get_by_label("Threshold")
    await expect(threshold).to_be_focused()
    await expect(threshold).to_have_attribute("aria-invalid", "true")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("-5")
    await page.keyboard.press("Enter")
    await expect(page.locator("#rules-table")).to_contain_text("Too cold")


async def webhook_by_keyboard(page: Page, served: Served, fleet: Fleet) -> None:
    await page.goto(f"{served.base_url}/console/webhooks/{fleet.webhook_id}")
    await tab_to(page, "button[hx-post$='/test']")
    await page.keyboard.press("Enter")
    await expect(page.locator("#deliveries-table tbody tr").first).to_contain_text("webhook.test")
    await expect(page.get_by_role("button", name="Send a test")).to_be_focused()


async def inventory_by_keyboard(page: Page, served: Served) -> None:
    """A device ticked with Space, then recalled with the bulk form, all by keyboard."""
    await page.goto(served.base_url + "/console/inventory?q=Spare")
    await settled(page)
    await tab_to(page, 'input[name="device"]')
    await page.keyboard.press("Space")
    await tab_to(page, "#bulk-action", back=True)
    await page.keyboard.type("Recall")
    await expect(page.locator("#bulk-action")).to_have_value("recalled")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Depot 2")
    await tab_to(page, "#bulk button[type=submit]")
    await page.keyboard.press("Enter")
    await expect(page.locator("#bulk-outcomes tbody tr")).to_have_count(1)


async def admin_by_keyboard(page: Page, served: Served) -> None:
    """An API key created with the keyboard: the focus goes to its copy button."""
    await page.goto(served.base_url + "/console/admin")
    await tab_to(page, "#api-key-name")
    await page.keyboard.type("by-keyboard")
    await page.keyboard.press("Enter")
    copy = page.locator("#api-keys").get_by_role("button", name="Copy to the clipboard")
    await expect(copy).to_be_focused()
    await expect(page.locator("#api-keys-table")).to_contain_text("by-keyboard")


async def test_keyboard_only_flows(served: Served, page: Page, admin: Actor, runtime: Runtime):
    fleet = await populate(served, admin, runtime)
    await sign_in(page, served, admin)
    await alerts_by_keyboard(page, served)
    await overview_by_keyboard(page, served, fleet)
    await device_by_keyboard(page)  # (its maintenance clears the device's alerts)
    await rules_by_keyboard(page, served)
    await webhook_by_keyboard(page, served, fleet)
    await admin_by_keyboard(page, served)
    if has_page("/console/inventory"):
        await inventory_by_keyboard(page, served)
