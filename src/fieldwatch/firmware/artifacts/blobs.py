"""Where artifacts' bytes live: a content-addressed blob store.

A blob is named by the SHA-256 of its bytes (``sha256/ab/<hex>``). It is written to a
temporary file in the store's own directory while it is hashed and counted, then
renamed into place (atomic: a reader sees the whole file or none), readable by all
(0644: a web server's workers, under a user of their own, send blobs when downloads are
handed over with ``X-Accel-Redirect``; the directory decides who reaches them). Writes
refuse to grow beyond a limit as they go, so nothing ever holds a whole file in memory;
the disk work runs in worker threads, a chunk at a time, off the event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio.to_thread

from fieldwatch.core.errors import PayloadTooLarge

#: Bytes gathered before one write to disk (one hop to a worker thread).
WRITE_BUFFER = 1024 * 1024
#: A stored blob's permissions (see the module's docstring).
BLOB_MODE = 0o644
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


class TooLarge(PayloadTooLarge):
    slug, title = "firmware-too-large", "Firmware file too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The firmware file is larger than the {limit} byte limit.", limit=limit)


def relative_path(sha256: str) -> str:
    """The blob's path under the store's root (also what ``X-Accel-Redirect`` names)."""
    if not _HEX.match(sha256):
        raise ValueError("not a SHA-256 hex digest")
    return f"sha256/{sha256[:2]}/{sha256}"


class BlobWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def seal(self) -> StoredBlob:
        """Everything is written: the blob's digest and size (not yet in place)."""
        ...

    async def finish(self) -> StoredBlob:
        """Put the blob in place (once it is sealed and accepted)."""
        ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    """Where blobs are kept. ``writer`` starts a blob of at most ``limit`` bytes."""

    def writer(self, limit: int) -> BlobWriter: ...
    def path(self, sha256: str) -> Path: ...
    def relative_path(self, sha256: str) -> str: ...
    async def exists(self, sha256: str) -> bool: ...
    async def delete(self, sha256: str) -> None: ...


class LocalWriter:
    """A blob being written to a temporary file next to its final place."""

    def __init__(self, store: LocalBlobStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self._file: IO[bytes] | None = None
        self._sealed: StoredBlob | None = None

    async def write(self, data: bytes) -> None:
        if self._sealed is not None:
            raise RuntimeError("the blob is sealed")
        self.size += len(data)
        if self.size > self.limit:
            await self.abort()
            raise TooLarge(self.limit)
        self._pending += data
        if len(self._pending) >= WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        chunk, self._pending = bytes(self._pending), bytearray()
        await anyio.to_thread.run_sync(self._write_sync, chunk)

    def _write_sync(self, chunk: bytes) -> None:
        if self._file is None:
            self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in finish/abort)
                dir=self.store.tmp_dir, prefix="upload-", delete=False
            )
            os.fchmod(self._file.fileno(), BLOB_MODE)  # mkstemp's is 0600
        self._hash.update(chunk)
        self._file.write(chunk)

    async def seal(self) -> StoredBlob:
        if self._sealed is None:
            await self._flush()
            self._sealed = StoredBlob(self._hash.hexdigest(), self.size)
        return self._sealed

    async def finish(self) -> StoredBlob:
        blob = await self.seal()
        await anyio.to_thread.run_sync(self._place, self.store.path(blob.sha256))
        return blob

    def _place(self, target: Path) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._file.name, target)  # the same bytes if it was there already
        self._file = None

    async def abort(self) -> None:
        self._pending.clear()
        if self._file is not None:
            file, self._file = self._file, None
            await anyio.to_thread.run_sync(_discard, file)


def _discard(file: IO[bytes]) -> None:
    file.close()
    Path(file.name).unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs in a directory (``settings.resolved_firmware_dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"  # same file system as the blobs: rename is atomic

    def writer(self, limit: int) -> LocalWriter:
        return LocalWriter(self, limit)

    async def put(self, chunks: AsyncIterable[bytes], limit: int) -> StoredBlob:
        """Store a whole stream of bytes (at most ``limit``)."""
        writer = self.writer(limit)
        try:
            async for chunk in chunks:
                await writer.write(chunk)
            return await writer.finish()
        except BaseException:
            await writer.abort()
            raise

    def relative_path(self, sha256: str) -> str:
        return relative_path(sha256)

    def path(self, sha256: str) -> Path:
        return self.root / relative_path(sha256)

    async def exists(self, sha256: str) -> bool:
        return await anyio.to_thread.run_sync(self.path(sha256).is_file)

    def open(self, sha256: str) -> IO[bytes]:
        """The blob for reading (blocking: for worker threads)."""
        return self.path(sha256).open("rb")

    async def delete(self, sha256: str) -> None:
        """Remove the blob. The caller checks first that no artifact refers to it."""
        await anyio.to_thread.run_sync(lambda: self.path(sha256).unlink(missing_ok=True))
