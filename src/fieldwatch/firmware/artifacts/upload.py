"""Reading an artifact upload (``multipart/form-data``) as it streams in.

The ``file`` part is written straight into the blob store (hashed and counted on the
way, refused beyond the size limit) by the shared streaming reader
(``fieldwatch.core.multipart``); the other fields are kept as short strings. Nothing
holds the file in memory and nothing is copied twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from fieldwatch.core.multipart import MultipartRules, read_multipart
from fieldwatch.firmware.artifacts.blobs import BlobStore, BlobWriter, TooLarge
from fieldwatch.firmware.artifacts.errors import InvalidField

RULES = MultipartRules(
    media_type_detail="Send the upload as multipart/form-data.",
    too_large=TooLarge,
    invalid=InvalidField,
    max_fields=64,
    max_field_bytes=64 * 1024,
    form_overhead=1024 * 1024,
)


@dataclass
class UploadForm:
    """The form's fields (each may repeat) and its file, written but not yet put in
    place: the caller ``finish``es the blob once it accepts the upload, or ``abort``s."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    content_type: str | None = None
    blob: BlobWriter | None = None


async def read_upload(request: Request, store: BlobStore, limit: int) -> UploadForm:
    """The upload's form, its file written to ``store`` (at most ``limit`` bytes)."""

    async def open_blob() -> BlobWriter:
        return store.writer(limit)

    form = await read_multipart(request, RULES, limit, open_blob)
    return UploadForm(form.fields, form.filename, form.content_type, form.sink)
