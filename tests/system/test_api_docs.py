"""The API docs work without internet: every asset comes from the package itself."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import fieldwatch

VENDOR = Path(fieldwatch.__file__).parent / "static" / "vendor"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
async def test_the_docs_pages_load_everything_from_this_server(client, page, script):
    r = await client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "://" not in r.text  # no other origin, not even in an inline script
    urls = _links(r.text)
    assert any(url.endswith(script) for url in urls)
    for url in urls:
        assert url.startswith("/static/vendor/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content == (VENDOR / url.removeprefix("/static/vendor/")).read_bytes()
    assert "/openapi.json" in r.text


async def test_the_schema_the_pages_read_is_served(client):
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["info"]["title"] == "Fieldwatch"
    assert "/docs" not in r.json()["paths"] and "/static" not in str(r.json()["paths"])


def test_the_vendored_files_are_the_ones_listed_with_their_checksums():
    listed = dict(
        re.findall(r"^\| `([^`]+)` \|[^|]+\|[^|]+\|[^|]+\| `([0-9a-f]{64})` \|$",
                   (VENDOR / "README.md").read_text(), flags=re.M)
    )  # fmt: skip
    on_disk = {
        str(path.relative_to(VENDOR)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name != "README.md"
    }
    assert "swagger-ui/swagger-ui-bundle.js" in on_disk and "redoc/redoc.standalone.js" in on_disk
    assert listed == on_disk
