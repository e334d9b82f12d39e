"""Helpers of the console's tests: signing in over HTTP, and a real browser (Debian's
headless Chromium driven by Playwright) with axe-core's accessibility checks and the
page's JavaScript errors."""

from __future__ import annotations

import html as html_lib
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from conftest import PASSWORD, Actor, Served, missing

CHROMIUM = "/usr/lib/chromium/chromium-headless-shell"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in_http(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    """Sign in through the login form; the client keeps the session cookie."""
    page = await client.get("/console/login")
    assert page.status_code == 200
    data = {"csrf_token": csrf_of(page.text), "email": email, "password": password}
    return await client.post("/console/login", data=data)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"{CHROMIUM} is missing: apt-get install chromium-headless-shell")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


def script_errors(page: Page) -> list[str]:
    """The page's JavaScript errors from now on (a refused request's status, which the
    browser also logs as "Failed to load resource", is expected and shown on the page)."""
    seen: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            seen.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.append(str(exc)))
    return seen


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    results = await Axe().run(page)
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in results.response["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


async def sign_in(page: Page, served: Served, actor: Actor) -> None:
    """Sign in through the login page; the browser lands on the fleet overview."""
    await page.goto(served.base_url + "/")
    await expect(page).to_have_url(served.base_url + "/console/login")
    await page.get_by_label("E-mail").fill(actor.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()


def section(text: str, element_id: str) -> str:
    """The element with this id, up to its closing tag of the same name (no nesting of
    the same tag inside it in these pages)."""
    found = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"', text)
    assert found, element_id
    end = text.index(f"</{found.group(1)}>", found.end())
    return text[found.start() : end]


def plain(fragment: str) -> str:
    """The text of an HTML fragment, its whitespace collapsed."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())
