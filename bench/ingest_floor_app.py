"""The least an HTTP ingest path can do, as a reference for bench_ingest.py.

A bare ASGI application (no framework, no authentication, no validation beyond the
decoder, no deduplication, rollups or latest values): read the seed 002 body, decode it
with msgspec, ``COPY`` its readings into ``$FLOOR_TABLE`` and answer 200 after the
commit. Served by uvicorn like ``fieldwatch serve``. What it reaches is what any Python
HTTP ingest can reach on this machine; the gap to the raw COPY figure is the cost of
HTTP and JSON alone. A benchmark helper, not part of Fieldwatch.

Environment: FLOOR_DSN (PostgreSQL), FLOOR_TABLE, FLOOR_CONNECTIONS (default 6).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import asyncpg
import msgspec


class Value(msgspec.Struct):
    value: float
    timestamp: datetime
    unit: str | None = None
    quality: str | None = None


class Body(msgspec.Struct):
    data_type: str
    values: list[Value]


decode = msgspec.json.Decoder(Body).decode
COLUMNS = ["series_id", "ts", "value", "text_value", "quality"]
series: dict[tuple[str, str], int] = {}
state: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["pool"] = await asyncpg.create_pool(
                    os.environ["FLOOR_DSN"],
                    min_size=1,
                    max_size=int(os.environ.get("FLOOR_CONNECTIONS", "6")),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["pool"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    status, answer = 200, b"{}"
    if scope["method"] == "POST":
        try:
            body = decode(b"".join(chunks))
        except (msgspec.DecodeError, msgspec.ValidationError):
            status, answer = 400, b'{"title": "Malformed"}'
        else:
            sid = series.setdefault((scope["path"], body.data_type), len(series) + 1)
            rows = [(sid, v.timestamp, v.value, None, 0) for v in body.values]
            async with state["pool"].acquire() as conn:
                await conn.copy_records_to_table(
                    os.environ["FLOOR_TABLE"], records=rows, columns=COLUMNS
                )
            answer = b'{"accepted": %d, "duplicates": 0, "rejected": []}' % len(rows)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": answer})
