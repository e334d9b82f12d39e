"""Reading an export upload (``multipart/form-data``) as it streams in: the ``file``
part goes straight to a temporary file in the health exports directory (never whole in
memory; refused past ``health_export_max_bytes``), the other fields are short strings.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from fieldwatch.core.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)

FILE_FIELD = "file"
MAX_FIELDS = 16
MAX_FIELD_BYTES = 4096
FORM_OVERHEAD = 64 * 1024
WRITE_BUFFER = 1024 * 1024


class ExportTooLarge(PayloadTooLarge):
    slug, title = "export-too-large", "Export too large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The export is larger than the {limit} byte limit "
                         "(FIELDWATCH_HEALTH_EXPORT_MAX_BYTES).", limit=limit)  # fmt: skip


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"field": name, "message": message}])


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


class _Reader:
    """python-multipart's callbacks: fields into ``form``, file bytes into ``pending``."""

    def __init__(self, form: ExportForm) -> None:
        self.form = form
        self.headers: dict[str, str] = {}
        self.header = [bytearray(), bytearray()]
        self.name = ""
        self.in_file = False
        self.value = bytearray()
        self.pending = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.begin,
            "on_header_field": lambda d, s, e: self.header[0].extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header[1].extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_done,
            "on_part_data": self.data,
            "on_part_end": self.end,
        }

    def begin(self) -> None:
        self.headers, self.name, self.in_file = {}, "", False
        self.value.clear()

    def header_end(self) -> None:
        key = self.header[0].decode("latin-1").strip().lower()
        self.headers[key] = self.header[1].decode("latin-1").strip()
        self.header = [bytearray(), bytearray()]

    def headers_done(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self.name == FILE_FIELD and filename is not None:
            if self.form.filename is not None:
                raise _invalid(FILE_FIELD, "Send one file per upload.")
            self.in_file = True
            self.form.filename = filename.decode("utf-8", "replace") or "export"
        elif len(self.form.fields) >= MAX_FIELDS:
            raise _invalid("form", f"At most {MAX_FIELDS} form fields.")

    def data(self, data: bytes, start: int, end: int) -> None:
        target = self.pending if self.in_file else self.value
        target.extend(data[start:end])
        if not self.in_file and len(self.value) > MAX_FIELD_BYTES:
            raise _invalid(self.name, f"Longer than {MAX_FIELD_BYTES} bytes.")

    def end(self) -> None:
        if not self.in_file:
            self.form.fields[self.name] = self.value.decode("utf-8", "replace")


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data":
        raise UnsupportedMediaType("Send the export as multipart/form-data (a 'file' part).")
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart body has no boundary.")
    return boundary


async def read_export_upload(request: Request, directory: Path, limit: int) -> ExportForm:
    """The form, its file written to a temporary file in ``directory`` (the caller
    moves it into place or ``discard``s it)."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise ExportTooLarge(limit)
    await anyio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=directory)
    form = ExportForm(path=Path(name))
    reader = _Reader(form)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                parser.write(chunk)
                if len(reader.pending) >= WRITE_BUFFER:
                    await _flush(reader, out, form, limit)
            parser.finalize()
            await _flush(reader, out, form, limit)
    except FormParserError as exc:
        form.discard()
        raise BadRequest(f"Malformed multipart body: {exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            form.discard()
        raise
    if form.filename is None:
        form.discard()
        raise _invalid(FILE_FIELD, "The form has no file part named 'file'.")
    return form


async def _flush(reader: _Reader, out: IO[bytes], form: ExportForm, limit: int) -> None:
    if not reader.pending:
        return
    form.size += len(reader.pending)
    if form.size > limit:
        raise ExportTooLarge(limit)
    data = bytes(reader.pending)
    reader.pending.clear()
    await anyio.to_thread.run_sync(out.write, data)
