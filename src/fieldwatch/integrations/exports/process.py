"""Reading a kept export in a run: the file is parsed in a worker thread a chunk at a
time (the event loop never blocks on it), each chunk handed to the runner's store (the
same normalisation, ingestion, counts and quality as a vendor's page)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from pathlib import Path

import anyio.to_thread

from fieldwatch.integrations.exports import apple, health_connect
from fieldwatch.integrations.exports.base import Chunk, InvalidExport

READERS: dict[str, Callable[[Path, int], Generator[Chunk]]] = {
    "apple_health": apple.read,
    "health_connect": health_connect.read,
}


async def read_export(
    path: Path | None, kind: str, max_unpacked: int, store: Callable[[Chunk], Awaitable[None]]
) -> None:
    reader = READERS.get(kind)
    if reader is None:
        raise InvalidExport(f"{kind} exports cannot be read.")
    if path is None:
        raise InvalidExport("The uploaded export is no longer kept: upload it again.")
    chunks = reader(path, max_unpacked)
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            await store(chunk)
    finally:
        await anyio.to_thread.run_sync(chunks.close)
