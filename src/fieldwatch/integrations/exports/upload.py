"""Reading an export upload (``multipart/form-data``) as it streams in: the shared
streaming reader (``fieldwatch.core.multipart``) writes the ``file`` part straight to a
temporary file in the health exports directory (never whole in memory; refused past
``health_export_max_bytes``), the other fields are short strings.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio.to_thread
from starlette.requests import Request

from fieldwatch.core.errors import PayloadTooLarge, ValidationFailed
from fieldwatch.core.multipart import MultipartRules, read_multipart


class ExportTooLarge(PayloadTooLarge):
    slug, title = "export-too-large", "Export too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The export is larger than the {limit} byte limit "
                         "(FIELDWATCH_HEALTH_EXPORT_MAX_BYTES).", limit=limit)  # fmt: skip


def _invalid(name: str, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"field": name, "message": message}])


RULES = MultipartRules(
    media_type_detail="Send the export as multipart/form-data (a 'file' part).",
    too_large=ExportTooLarge,
    invalid=_invalid,
    max_names=16,
    max_field_bytes=4096,
    form_overhead=64 * 1024,
    strict_text=False,
    buffer_bytes=1024 * 1024,  # one write a MiB, in a worker thread
    file_must_end=False,
)


@dataclass
class ExportForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class _TempFile:
    """The file part's sink: a temporary file in ``directory``, written in a worker
    thread (a buffer at a time: ``RULES.buffer_bytes``)."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        self.file, self.path = file, path

    @classmethod
    async def open(cls, directory: Path) -> _TempFile:
        def create() -> _TempFile:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".upload-", dir=directory)
            return cls(os.fdopen(fd, "wb"), Path(name))

        return await anyio.to_thread.run_sync(create)

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self.file.write, data)

    async def seal(self) -> Path:
        await anyio.to_thread.run_sync(self.file.close)
        return self.path

    async def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


async def read_export_upload(request: Request, directory: Path, limit: int) -> ExportForm:
    """The form, its file written to a temporary file in ``directory`` (the caller
    moves it into place or ``discard``s it)."""
    form = await read_multipart(request, RULES, limit, lambda: _TempFile.open(directory))
    return ExportForm(
        fields={name: values[-1] for name, values in form.fields.items()},
        filename=form.filename or "export",
        path=form.sink.path,
        size=form.size,
    )
