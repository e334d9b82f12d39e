"""The administration page in a real browser against a real server: reached from the
menu by an admin only, an API key created (shown once, with a copy button) and revoked,
a refusal shown next to its form, axe-core's checks in both themes; signing in and out as
an admin and as a viewer."""

from __future__ import annotations

import re

from playwright.async_api import Dialog, Page, expect

from conftest import Actor, Served
from console_helpers import browser, page, serious_violations, sign_in
from ws_helpers import WAIT_S

__all__ = ["browser", "page"]  # the fixtures


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def sign_out(page: Page, served: Served) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(served.base_url + "/console/login?m=signed-out")


async def test_an_admin_creates_an_api_key_sees_it_once_copies_and_revokes_it(
    page: Page, served: Served, admin: Actor
):
    page.on("dialog", accept)  # the "Revoke …?" confirmation
    await sign_in(page, served, admin)
    await page.get_by_role("link", name="Administration").click()
    await expect(page.get_by_role("heading", name="Administration", level=1)).to_be_visible()
    assert await serious_violations(page) == []

    section = page.locator("#api-keys")
    await section.get_by_label("Name").fill("ci-bot")
    await section.get_by_label("Role").select_option("operator")
    await section.get_by_role("button", name="Create API key").click()
    secret = section.locator("#new-api-key")
    await expect(secret).to_have_text(re.compile(r"^\S{20,}$"))
    key = (await secret.text_content() or "").strip()
    copy = section.get_by_role("button", name="Copy to the clipboard")
    await expect(copy).to_be_visible()
    await copy.click()
    await expect(section.locator(".copied")).to_have_text(re.compile(r"Copied\.|Selected"))
    row = section.locator("#api-keys-table tbody tr", has_text="ci-bot")
    await expect(row).to_contain_text("operator")
    await expect(row).to_contain_text("active")
    r = await served.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["kind"] == "api_key"
    assert await serious_violations(page) == []  # with the secret shown

    await page.reload()  # shown once: gone after a reload
    await expect(page.locator("#api-keys-table")).to_contain_text("ci-bot")
    await expect(page.locator("#new-api-key")).to_have_count(0)
    assert key not in await page.content()

    row = page.locator("#api-keys-table tbody tr", has_text="ci-bot")
    await row.get_by_role("button", name="Revoke ci-bot").click()
    await expect(page.locator("#api-keys")).to_contain_text("The API key 'ci-bot' is revoked.")
    await expect(row).to_contain_text("revoked")
    await expect(row.get_by_role("button", name="Revoke ci-bot")).to_have_count(0)
    r = await served.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401


async def test_a_refusal_shows_next_to_its_form_in_either_theme(
    page: Page, served: Served, admin: Actor
):
    await sign_in(page, served, admin)
    await page.goto(served.base_url + "/console/admin")
    mine = page.locator("#members-table tbody tr", has_text=admin.email)
    await mine.get_by_label(f"Role of {admin.email}").select_option("viewer")
    await mine.get_by_role("button", name=f"Change the role of {admin.email}").click()
    error = mine.locator("[data-errors] .problem")
    await expect(error).to_contain_text("last admin", timeout=WAIT_S * 1000)
    await expect(page.locator("#page-error")).to_be_empty()
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    section = page.locator("#provisioning-keys")
    await section.get_by_label("Name").fill("line 1")
    await section.get_by_role("button", name="Create provisioning key").click()
    await expect(section.locator("#new-provisioning-key")).to_have_text(re.compile("^fwp_"))
    assert await serious_violations(page) == []


async def test_sign_in_and_out_as_an_admin_and_as_a_viewer(
    page: Page, served: Served, admin: Actor, viewer: Actor
):
    await sign_in(page, served, admin)
    await expect(page.locator("#role")).to_have_text("admin")
    await expect(page.get_by_role("link", name="Administration")).to_be_visible()
    await sign_out(page, served)

    await sign_in(page, served, viewer)
    await expect(page.locator("#role")).to_have_text("viewer")
    await expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    await expect(page.get_by_role("link", name="Administration")).to_have_count(0)
    await page.goto(served.base_url + "/console/admin")
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("This needs the admin role")
    await expect(page.locator("#api-keys")).to_have_count(0)
    assert await serious_violations(page) == []
    await page.get_by_role("link", name="Back to the console").click()
    await sign_out(page, served)
    await page.goto(served.base_url + "/console/admin")
    await expect(page).to_have_url(served.base_url + "/console/login")
