"""Reading an artifact upload (``multipart/form-data``) as it streams in.

The request body goes through python-multipart's streaming parser a network chunk at a
time: the ``file`` part is written straight into the blob store (hashed and counted on
the way, refused beyond the size limit), the other fields are kept as short strings.
Nothing holds the file in memory and nothing is copied twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from fieldwatch.core.errors import BadRequest, UnsupportedMediaType
from fieldwatch.firmware.artifacts.blobs import BlobStore, BlobWriter, TooLarge
from fieldwatch.firmware.artifacts.errors import InvalidField

FILE_FIELD = "file"
MAX_FIELDS = 64
MAX_FIELD_BYTES = 64 * 1024
#: What the form's other fields and boundaries may add to the file's size.
FORM_OVERHEAD = 1024 * 1024


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    value: bytearray = field(default_factory=bytearray)


@dataclass
class UploadForm:
    """The form's fields (each may repeat) and its file, written but not yet put in
    place: the caller ``finish``es the blob once it accepts the upload, or ``abort``s."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    content_type: str | None = None
    blob: BlobWriter | None = None


class _Collector:
    """python-multipart's callbacks (synchronous): fields into ``form``, file bytes
    into ``pending`` for the reading loop to write out."""

    def __init__(self, form: UploadForm) -> None:
        self.form = form
        self.part = _Part()
        self.pending = bytearray()
        self.files = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self.part.header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.part.header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_end(self) -> None:
        name = self.part.header_name.decode("latin-1").strip().lower()
        self.part.headers[name] = self.part.header_value.decode("latin-1").strip()
        self.part.header_name.clear()
        self.part.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", ""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self.part.name == FILE_FIELD and filename is not None:
            self.files += 1
            if self.files > 1:
                raise InvalidField(FILE_FIELD, "Send one file per upload.")
            self.part.filename = filename.decode("utf-8", "replace")
            self.part.content_type = self.part.headers.get("content-type")
        elif sum(len(v) for v in self.form.fields.values()) >= MAX_FIELDS:
            raise InvalidField("form", f"At most {MAX_FIELDS} form fields.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.filename is not None:
            self.pending.extend(data[start:end])
            return
        self.part.value.extend(data[start:end])
        if len(self.part.value) > MAX_FIELD_BYTES:
            raise InvalidField(self.part.name, f"Longer than {MAX_FIELD_BYTES} bytes.")

    def on_part_end(self) -> None:
        if self.part.filename is not None:
            self.form.filename = self.part.filename
            self.form.content_type = self.part.content_type
            return
        try:
            text = self.part.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidField(self.part.name, "Not UTF-8 text.") from exc
        self.form.fields.setdefault(self.part.name, []).append(text)


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data":
        raise UnsupportedMediaType("Send the upload as multipart/form-data.")
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart body has no boundary.")
    return boundary


async def read_upload(request: Request, store: BlobStore, limit: int) -> UploadForm:
    """The upload's form, its file written to ``store`` (at most ``limit`` bytes)."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise TooLarge(limit)
    form = UploadForm(blob=store.writer(limit))
    collector = _Collector(form)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    assert form.blob is not None
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if collector.pending:
                await form.blob.write(bytes(collector.pending))
                collector.pending.clear()
        parser.finalize()
    except FormParserError as exc:
        await form.blob.abort()
        raise BadRequest(f"Malformed multipart body: {exc}") from exc
    except BaseException:
        await form.blob.abort()
        raise
    if form.filename is None:
        await form.blob.abort()
        raise InvalidField(FILE_FIELD, "The form has no file part named 'file'.", "missing")
    return form
