"""Reading an upload (``multipart/form-data``) as it streams in.

The request body goes through python-multipart's streaming parser a network chunk at a
time: the one file part (``file``) is counted, refused beyond the size limit and handed
to a sink as it comes (the firmware blob store, a temporary file for health exports);
the other fields are kept as short strings. Nothing holds the file in memory. Each kind
of upload says what it accepts and how it refuses in its ``MultipartRules``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from fieldwatch.core.errors import AppError, BadRequest, UnsupportedMediaType

FILE_FIELD = "file"


class MultipartSink(Protocol):
    """Where the file part's bytes go. ``seal`` once the body is read whole (the
    bytes are all written, nothing is put in place yet); ``abort`` drops them."""

    async def write(self, data: bytes) -> None: ...
    async def seal(self) -> object: ...
    async def abort(self) -> None: ...


S = TypeVar("S", bound=MultipartSink)


@dataclass(frozen=True)
class MultipartRules:
    """What one kind of upload takes, and its problems: ``too_large(limit)`` for a file
    over the limit, ``invalid(field, message, kind)`` for a refused form (``kind`` is
    ``"missing"`` when there is no file, else ``"value_error"``)."""

    media_type_detail: str  # the 415's detail for a body that is not multipart
    too_large: Callable[[int], AppError]
    invalid: Callable[[str, str, str], AppError]
    max_field_bytes: int
    #: What the form's other fields and boundaries may add to the file's size.
    form_overhead: int
    max_fields: int | None = None  # field values in all (a name may repeat)
    max_names: int | None = None  # different names (past it, no field more, even repeated)
    strict_text: bool = True  # a field that is not UTF-8 is refused (else replaced)
    #: File bytes gathered before they are counted and handed to the sink (0: each
    #: network chunk's as it comes, for a sink that buffers itself).
    buffer_bytes: int = 0
    #: The file part must end (its closing boundary seen) to count as sent; else a
    #: body cut short in the file part keeps what came.
    file_must_end: bool = True


@dataclass
class MultipartForm(Generic[S]):
    """The form: its fields (each may repeat, in order) and its file, written to
    ``sink`` (sealed, not yet put in place: the caller does, or ``abort``s)."""

    sink: S
    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    content_type: str | None = None
    file_ended: bool = False
    size: int = 0


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    name: str = ""
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


class _Collector(Generic[S]):
    """python-multipart's callbacks (synchronous): fields into ``form``, file bytes
    into ``pending`` for the reading loop to hand to the sink."""

    def __init__(self, form: MultipartForm[S], rules: MultipartRules) -> None:
        self.form = form
        self.rules = rules
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
                raise self._invalid(FILE_FIELD, "Send one file per upload.")
            self.part.is_file = True
            self.form.filename = filename.decode("utf-8", "replace")
            self.form.content_type = self.part.headers.get("content-type")
        elif (most := self._full_at()) is not None:
            raise self._invalid("form", f"At most {most} form fields.")

    def _full_at(self) -> int | None:
        """The limit on fields the form has reached, if any."""
        fields, rules = self.form.fields, self.rules
        if rules.max_names is not None and len(fields) >= rules.max_names:
            return rules.max_names
        values = sum(len(v) for v in fields.values())
        if rules.max_fields is not None and values >= rules.max_fields:
            return rules.max_fields
        return None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.is_file:
            self.pending.extend(data[start:end])
            return
        self.part.value.extend(data[start:end])
        if len(self.part.value) > self.rules.max_field_bytes:
            limit = self.rules.max_field_bytes
            raise self._invalid(self.part.name, f"Longer than {limit} bytes.")

    def on_part_end(self) -> None:
        if self.part.is_file:
            self.form.file_ended = True
            return
        errors = "strict" if self.rules.strict_text else "replace"
        try:
            text = self.part.value.decode("utf-8", errors)
        except UnicodeDecodeError as exc:
            raise self._invalid(self.part.name, "Not UTF-8 text.") from exc
        self.form.fields.setdefault(self.part.name, []).append(text)

    def _invalid(self, name: str, message: str, kind: str = "value_error") -> AppError:
        return self.rules.invalid(name, message, kind)


def _boundary(request: Request, rules: MultipartRules) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data":
        raise UnsupportedMediaType(rules.media_type_detail)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart body has no boundary.")
    return boundary


async def read_multipart(
    request: Request, rules: MultipartRules, limit: int, open_sink: Callable[[], Awaitable[S]]
) -> MultipartForm[S]:
    """The upload's form, its file (at most ``limit`` bytes) written to the sink
    ``open_sink`` gives once the request looks like an upload of that size. On any
    refusal or failure the sink is aborted."""
    boundary = _boundary(request, rules)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + rules.form_overhead:
        raise rules.too_large(limit)
    form = MultipartForm(sink=await open_sink())
    collector = _Collector(form, rules)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if len(collector.pending) >= rules.buffer_bytes:
                await _hand_over(collector, form, rules, limit)
        parser.finalize()
        await _hand_over(collector, form, rules, limit)
        sent = form.file_ended if rules.file_must_end else form.filename is not None
        if not sent:
            message = f"The form has no file part named '{FILE_FIELD}'."
            raise rules.invalid(FILE_FIELD, message, "missing")
        await form.sink.seal()
    except FormParserError as exc:
        await form.sink.abort()
        raise BadRequest(f"Malformed multipart body: {exc}") from exc
    except BaseException:
        await form.sink.abort()
        raise
    return form


async def _hand_over(
    collector: _Collector[S], form: MultipartForm[S], rules: MultipartRules, limit: int
) -> None:
    if not collector.pending:
        return
    form.size += len(collector.pending)
    if form.size > limit:
        raise rules.too_large(limit)
    data = bytes(collector.pending)
    collector.pending.clear()
    await form.sink.write(data)
