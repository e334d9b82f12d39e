"""The test suite's Oura stand-in (OAuth with PKCE, personal info, the ring) served in a
process of its own for bench/bench_sync.py, its CPU apart from the server's.

Heart rate is answered by a cheaper route than the test stand-in's: the same minute
samples (``standins.oura.heart_rate``), the same 500-sample pages and ``next_token``,
but each page is rendered as JSON text once and kept (every account of the benchmark
asks for the same minutes; a user's name length is part of the key, as it is of the
heart rate), so the vendor costs little next to the server under test.

Usage: python bench/sync/standin.py --port PORT
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from standins.oura import PAGE, Oura, _offset, _token, _when, oura_app  # noqa: E402

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret-0123456789"


@functools.lru_cache(maxsize=8192)
def page_text(first_minute: int, offset: int, count: int, user_len: int, more: str) -> bytes:
    """One page of minute samples from ``first_minute`` (minutes since the epoch)."""
    items = []
    for minute in range(first_minute + offset, first_minute + offset + count):
        stamp = time.strftime("%Y-%m-%dT%H:%M:00+00:00", time.gmtime(minute * 60))
        bpm = 55 + (minute + user_len) % 40  # standins.oura.heart_rate, without datetimes
        items.append(f'{{"bpm":{bpm},"source":"awake","timestamp":"{stamp}"}}')
    token = json.dumps(more or None)
    return f'{{"data":[{",".join(items)}],"next_token":{token}}}'.encode()


def heartrate_route(vendor: Oura) -> Route:
    async def heartrate(request: Request) -> Response:
        user = vendor.user_of(request)
        q = request.query_params
        end = _when(q.get("end_datetime"), datetime.now(UTC))
        start = _when(q.get("start_datetime"), end - timedelta(days=1))
        first = math.ceil(start.timestamp() / 60)
        total = max(0, math.floor(end.timestamp() / 60) - first + 1)
        offset = _offset(q.get("next_token"))
        count = max(0, min(PAGE, total - offset))
        more = _token(offset + count) if offset + count < total else ""
        body = page_text(first, offset, count, len(user), more)
        return Response(body, media_type="application/json")

    return Route("/v2/usercollection/heartrate", heartrate, methods=["GET"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    vendor = Oura(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl_s=86_400)
    app = oura_app(vendor)
    app.router.routes.insert(0, heartrate_route(vendor))  # before the test stand-in's
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
