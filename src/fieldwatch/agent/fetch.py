"""A resumable HTTP download for firmware images.

The bytes go to a partial file next to the target (``<target>.part``). A later attempt
asks only for what is missing (``Range: bytes=N-``, N = the partial file's length) with
``If-Range`` naming the image's ETag, so a server holding another image under that
address sends the whole of it (200) and the partial file starts over. Writes go through
a worker thread: the event loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx

log = logging.getLogger(__name__)

#: The longest ``Retry-After`` a download waits for before it gives up this attempt.
MAX_RETRY_AFTER_S = 60.0

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

#: Told of the bytes on disk as they grow.
OnBytes = Callable[[int], Awaitable[None]]


class DownloadError(Exception):
    """This attempt failed (the partial file keeps what arrived)."""


class Busy(DownloadError):
    """The server's download slots are full (503): try again after ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the server is busy; retry after {retry_after:g} s")
        self.retry_after = retry_after


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _resumes_at(response: httpx.Response, have: int) -> bool:
    """Whether a 206 continues exactly where the partial file ends."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return match is not None and int(match.group(1)) == have


async def fetch(
    http: httpx.AsyncClient,
    url: str,
    target: Path,
    *,
    size: int | None,
    etag: str | None,
    headers: dict[str, str] | None = None,
    on_bytes: OnBytes | None = None,
) -> int:
    """Download ``url`` into ``partial_path(target)``, resuming from what it holds; returns
    the bytes on disk. Raises ``DownloadError`` (``Busy`` for a 503), or httpx's errors
    when the connection fails; what arrived until then stays for the next attempt."""
    part = partial_path(target)
    have = _size(part)
    if size is not None and have > size:  # not a prefix of this image
        part.unlink()
        have = 0
    if size is not None and have == size:
        return have
    ask = {**(headers or {}), "Accept-Encoding": "identity"}  # byte offsets of the image
    if have:
        ask["Range"] = f"bytes={have}-"
        if etag:
            ask["If-Range"] = etag
    async with http.stream("GET", url, headers=ask) as r:
        if r.status_code == 416:  # the partial file is no prefix of what the server has
            part.unlink(missing_ok=True)
            raise DownloadError("the server refused the range; starting over next time")
        if r.status_code == 503:
            raise Busy(_retry_after(r))
        if r.status_code == 206 and _resumes_at(r, have):
            mode = "ab"
        elif r.status_code == 200:
            mode, have = "wb", 0  # the whole image (a changed one, or no range support)
        else:
            raise DownloadError(f"HTTP {r.status_code} from the download")
        f: IO[bytes] = await asyncio.to_thread(part.open, mode)
        try:
            async for chunk in r.aiter_raw():  # each piece as it comes: none lost on a drop
                await asyncio.to_thread(f.write, chunk)
                have += len(chunk)
                if on_bytes is not None:
                    await on_bytes(have)
        finally:
            await asyncio.to_thread(f.close)
    return have
