"""The streaming multipart reader both uploads use: the file goes to the sink in
pieces (counted and capped on the way), fields are kept, each kind of upload's rules
decide what is refused, and a refused upload's sink is aborted."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from fieldwatch.core.errors import AppError, PayloadTooLarge, ValidationFailed
from fieldwatch.core.multipart import MultipartForm, MultipartRules, read_multipart

BOUNDARY = b"b0undary"
END = b"--" + BOUNDARY + b"--\r\n"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY.decode()}\r\nContent-Disposition: {disposition}\r\n\r\n"
    return head.encode() + value + b"\r\n"


def request(body: bytes, chunk: int = 1000, declared: int | None = None) -> Request:
    headers = [(b"content-type", b"multipart/form-data; boundary=" + BOUNDARY)]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]

    async def receive() -> dict[str, object]:
        more = len(chunks) > 1
        return {"type": "http.request", "body": chunks.pop(0) if chunks else b"", "more_body": more}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


class Sink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.sealed = self.aborted = False

    async def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def seal(self) -> None:
        self.sealed = True

    async def abort(self) -> None:
        self.aborted = True


def invalid(field: str, message: str, kind: str) -> AppError:
    return ValidationFailed(message, errors=[{"field": field, "message": message, "type": kind}])


def rules(**changes: Any) -> MultipartRules:
    base: dict[str, Any] = {
        "media_type_detail": "Send multipart.",
        "too_large": lambda limit: PayloadTooLarge(f"Over {limit}.", limit=limit),
        "invalid": invalid,
        "max_field_bytes": 100,
        "form_overhead": 1000,
    }
    return MultipartRules(**{**base, **changes})


async def read(body: bytes, **kw: Any) -> MultipartForm[Sink]:
    """``body`` read with ``rules(**kw)``; ``limit``, ``chunk``, ``declared`` (its
    Content-Length) and ``sinks`` (gets the sink opened) are taken out first."""
    limit, opened = kw.pop("limit", 10_000), kw.pop("sinks", [])
    req = request(body, kw.pop("chunk", 1000), kw.pop("declared", None))

    async def open_sink() -> Sink:
        opened.append(Sink())
        return opened[-1]

    return await read_multipart(req, rules(**kw), limit, open_sink)


async def refused(body: bytes, **kw: Any) -> tuple[AppError, list[Sink]]:
    sinks: list[Sink] = []
    with pytest.raises(AppError) as caught:
        await read(body, sinks=sinks, **kw)
    return caught.value, sinks


async def test_file_in_pieces_fields_in_order():
    body = part("a", b"1") + part("file", b"x" * 5000, "f.bin") + part("a", b"2") + END
    form = await read(body, buffer_bytes=0)
    assert form.fields == {"a": ["1", "2"]}
    assert (form.filename, form.size, form.file_ended) == ("f.bin", 5000, True)
    assert b"".join(form.sink.writes) == b"x" * 5000 and len(form.sink.writes) > 1
    assert form.sink.sealed and not form.sink.aborted

    gathered = await read(body, buffer_bytes=2048)  # handed over 2 KiB or more at a time
    writes = gathered.sink.writes
    assert b"".join(writes) == b"x" * 5000 and len(writes) > 1
    assert all(len(w) >= 2048 for w in writes[:-1])


@pytest.mark.parametrize(
    ("limits", "body_fields", "refused_at"),
    [
        ({"max_fields": 3}, [("a", b"1")] * 4, 3),  # values counted, repeats too
        ({"max_names": 3}, [("a", b"1")] * 10, None),  # one name, repeated: taken
        ({"max_names": 3}, [("a", b"1"), ("b", b"1"), ("c", b"1"), ("a", b"2")], 3),
    ],
)
async def test_field_limits(
    limits: dict[str, int], body_fields: list[tuple[str, bytes]], refused_at: int | None
):
    body = b"".join(part(n, v) for n, v in body_fields) + part("file", b"x", "f") + END
    if refused_at is None:
        assert (await read(body, **limits)).fields["a"] == ["1"] * 10
        return
    error, sinks = await refused(body, **limits)
    assert error.detail == f"At most {refused_at} form fields."
    assert sinks[0].aborted


async def test_too_large_while_streaming_and_by_content_length():
    body = part("file", b"x" * 5000, "f") + END
    error, sinks = await refused(body, limit=4000)
    assert (error.status, error.detail, error.extra) == (413, "Over 4000.", {"limit": 4000})
    assert sinks[0].aborted and sum(map(len, sinks[0].writes)) <= 4000

    error, sinks = await refused(body, limit=4000, declared=5001)
    assert error.status == 413 and sinks == []  # refused before anything is opened


async def test_cut_short_in_the_file():
    body = part("a", b"1") + part("file", b"x" * 10, "f")[:-10]  # no closing boundary
    error, sinks = await refused(body)
    assert error.extra["errors"][0] == {
        "field": "file", "message": "The form has no file part named 'file'.", "type": "missing"
    }  # fmt: skip
    assert sinks[0].aborted
    kept = await read(body, file_must_end=False)
    assert kept.filename == "f" and not kept.file_ended and kept.sink.sealed


FILE = part("file", b"x", "f")


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (part("a", b"\xff") + FILE + END, 422, "Not UTF-8 text."),
        (part("a", b"y" * 101) + FILE + END, 422, "Longer than 100 bytes."),
        (FILE * 2 + END, 422, "Send one file per upload."),
        (b"--" + BOUNDARY + b"\r\nbroken header\r\n\r\nx" + END, 400, "Malformed multipart body: "),
    ],
)
async def test_refusals_abort_the_sink(body: bytes, status: int, detail: str):
    error, sinks = await refused(body)
    assert error.status == status and error.detail.startswith(detail)
    assert sinks[0].aborted and not sinks[0].sealed


async def test_text_replaced_when_not_strict():
    form = await read(part("a", b"\xff") + part("file", b"x", "f") + END, strict_text=False)
    assert form.fields == {"a": ["\ufffd"]}
