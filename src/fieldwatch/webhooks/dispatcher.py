"""Webhook delivery: the database is the queue.

``WebhookDispatcher.handle`` receives ``alert.*`` and ``webhook.test`` events from the
bus and inserts one pending ``webhook_deliveries`` row per enabled webhook of the
event's workspace whose ``event_types`` match (a ``webhook.test`` event with a subject
goes to that webhook only). A restart loses nothing: pending rows stay in the table.
An event already queued for a webhook is not queued twice (unique key), so several
processes that all receive the event (fan-out bus) queue it once.

The worker (``start()``, or ``run_once()`` in tests) claims a few due rows at a time
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes share the work),
checks the URL again (DNS may have changed: see ``urlsafety``), and POSTs a signed JSON
body (see ``signing`` for the headers and how receivers verify them), without
following redirects. A 2xx answer delivers it. Anything else is retried with
exponential backoff and jitter, scheduled in the database: ``next_attempt_at = now +
min(base·2^(attempts-1), cap) + up to 10 % jitter`` (computed here rather than with
tenacity, whose in-process retry loops do not survive a restart), until
``webhook_max_attempts`` attempts, then the delivery is ``failed``. A URL that is now
refused by the SSRF check fails at once, without retries.

Delivery is at least once: receivers drop duplicates by the body's ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch import __version__
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import WORKERS, Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.webhooks import signing
from fieldwatch.webhooks.models import DELIVERED, FAILED, PENDING
from fieldwatch.webhooks.repository import DeliveryRepository, WebhookRepository
from fieldwatch.webhooks.service import WEBHOOK_TEST
from fieldwatch.webhooks.urlsafety import IPAddress, Target, UnsafeUrl, check_url

log = logging.getLogger(__name__)

EVENT_PATTERNS = ("alert.*", WEBHOOK_TEST)
USER_AGENT = f"Fieldwatch-Webhooks/{__version__}"
LEASE_MARGIN_S = 60.0
MAX_ERROR_CHARS = 1000
RESPONSE_SNIPPET_BYTES = 200
MAX_ADDRESSES_TRIED = 3
_jitter = random.SystemRandom()


def backoff_delay(attempts: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait after ``attempts`` failed attempts (1, 2, …): exponential,
    capped, plus up to 10 % random jitter so that many failures do not retry in step."""
    delay = min(base_s * 2 ** min(max(attempts - 1, 0), 40), cap_s)
    return delay + _jitter.uniform(0, delay * 0.1)


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None  # None: delivered
    retry: bool = True  # False: refused, do not try again


@dataclass(frozen=True, slots=True)
class _Job:
    """What a claimed delivery needs, detached from the session."""

    delivery_id: int
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID
    url: str
    secret: str
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]
    attempts: int

    def body(self) -> bytes:
        document = {
            "id": str(self.event_id),
            "type": self.event_type,
            "occurred_at": self.occurred_at.isoformat(),
            "workspace_id": str(self.workspace_id),
            "data": self.payload,
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _json_safe(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as plain JSON values (UUIDs, datetimes… become strings)."""
    return dict(json.loads(json.dumps(payload, default=str)))


def _no_cookies() -> CookieJar:
    """Receivers can not plant cookies that would be sent to other receivers."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class WebhookDispatcher:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        #: Attempts by what came of them: delivered, retrying (to be sent again), failed.
        self.attempts: Counter[str] = Counter()

    # --- queueing ---------------------------------------------------------------------

    def subscribe(self, bus: EventBus) -> None:
        """A worker's work: with several workers one of them queues each event (and
        events that came while none ran wait for one: ``events.WORKERS``)."""
        for pattern in EVENT_PATTERNS:
            self._unsubscribe.append(bus.subscribe(pattern, self.handle, group=WORKERS))

    async def handle(self, event: Event) -> None:
        """Queue ``event`` for every enabled webhook of its workspace that wants it."""
        async with self.sessionmaker() as session:
            webhooks = await WebhookRepository(session).enabled(event.workspace_id)
            if event.type == WEBHOOK_TEST:
                targets = [
                    w for w in webhooks if event.subject_id is None or w.id == event.subject_id
                ]
            else:
                targets = [
                    w
                    for w in webhooks
                    if any(fnmatch.fnmatchcase(event.type, p) for p in w.event_types)
                ]
            if not targets:
                return
            now = self.clock()
            payload = _json_safe(event.payload)
            rows = [
                {
                    "webhook_id": w.id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "payload": payload,
                    "occurred_at": event.occurred_at,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for w in targets
            ]
            queued = await DeliveryRepository(session).queue(rows)
            await session.commit()
        if queued:
            log.debug(
                "webhook deliveries queued",
                extra={"event_type": event.type, "event_id": str(event.id), "count": queued},
            )
            self._wake.set()

    # --- the worker -------------------------------------------------------------------

    def notify(self) -> None:
        """Wake the worker: deliveries were queued (e.g. a test delivery)."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="webhook-worker")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._task is not None:
            # Let the pass in progress record its results (a delivery cut off between
            # send and record would be sent again after its lease); cancel it if it
            # takes longer than a request may.
            self._stopping.set()
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, self.settings.webhook_timeout_s + 1.0)
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("webhook worker pass failed")
                done = 0
            if done < self.settings.webhook_batch_size and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval_s)

    async def run_once(self) -> int:
        """Send the deliveries that are due now (one batch). Returns how many."""
        jobs = await self._claim()
        if jobs:
            await asyncio.gather(*(self._deliver(job) for job in jobs))
        return len(jobs)

    async def _claim(self) -> list[_Job]:
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.webhook_timeout_s + LEASE_MARGIN_S)
        async with self.sessionmaker() as session:
            rows = await DeliveryRepository(session).claim_due(
                now, lease, self.settings.webhook_batch_size
            )
            jobs = [
                _Job(
                    delivery_id=d.id,
                    webhook_id=w.id,
                    workspace_id=w.workspace_id,
                    url=w.url,
                    secret=w.secret,
                    event_id=d.event_id,
                    event_type=d.event_type,
                    occurred_at=d.occurred_at,
                    payload=dict(d.payload),
                    attempts=d.attempts,
                )
                for d, w in rows
            ]
            await session.commit()
        return jobs

    async def _deliver(self, job: _Job) -> None:
        try:
            outcome = await self.send(job)
        except Exception as exc:  # a bug, not the receiver's fault: keep it retryable
            log.exception("webhook delivery %s crashed", job.delivery_id)
            outcome = Outcome(None, f"internal error: {type(exc).__name__}")
        try:
            await self._record(job, outcome)
        except Exception:
            # The lease expires and the delivery is tried again.
            log.exception("recording webhook delivery %s failed", job.delivery_id)

    async def _record(self, job: _Job, outcome: Outcome) -> None:
        now = self.clock()
        attempts = job.attempts + 1
        next_at = now
        if outcome.error is None:
            status = DELIVERED
        elif not outcome.retry or attempts >= self.settings.webhook_max_attempts:
            status = FAILED
        else:
            status = PENDING
            delay = backoff_delay(
                attempts, self.settings.webhook_backoff_base_s, self.settings.webhook_backoff_cap_s
            )
            next_at = now + timedelta(seconds=delay)
        error = outcome.error[:MAX_ERROR_CHARS] if outcome.error else None
        async with self.sessionmaker() as session:
            recorded = await DeliveryRepository(session).finish(
                job.delivery_id,
                status=status,
                attempts=attempts,
                next_attempt_at=next_at,
                status_code=outcome.status_code,
                error=error,
                at=now,
            )
            if recorded:
                await WebhookRepository(session).record_result(
                    job.webhook_id, now, outcome.status_code, error
                )
            await session.commit()
        fields = {
            "webhook_id": str(job.webhook_id),
            "delivery_id": job.delivery_id,
            "event_type": job.event_type,
            "attempts": attempts,
            "delivery_status": status,
            "status_code": outcome.status_code,
        }
        self.attempts["retrying" if status == PENDING else status] += 1
        if error is None:
            log.info("webhook delivered", extra=fields)
        else:
            log.warning("webhook delivery attempt failed: %s", error, extra=fields)

    # --- HTTP ---------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.webhook_timeout_s),
                follow_redirects=False,
                trust_env=False,  # no proxies from the environment: we connect where we checked
                cookies=_no_cookies(),
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            )
        return self._client

    async def send(self, job: _Job) -> Outcome:
        """One attempt: check the URL, POST the signed body, classify the answer."""
        try:
            target = await check_url(job.url, allow_private=self.settings.webhook_allow_private)
        except UnsafeUrl as exc:
            if exc.unresolvable:  # maybe a passing DNS failure
                return Outcome(None, exc.reason)
            return Outcome(None, f"refused: {exc.reason}", retry=False)
        body = job.body()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Fieldwatch-Event": job.event_type,
            "X-Fieldwatch-Delivery": str(job.delivery_id),
            "X-Fieldwatch-Timestamp": str(timestamp),
            "X-Fieldwatch-Signature": signing.sign(job.secret, timestamp, body),
        }
        timeout = self.settings.webhook_timeout_s
        error = "no address to connect to"
        try:
            async with asyncio.timeout(timeout):
                for address in target.addresses[:MAX_ADDRESSES_TRIED]:
                    try:
                        return await self._post(target, address, body, headers)
                    except httpx.ConnectError as exc:
                        error = f"could not connect to {address}: {exc or type(exc).__name__}"
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(None, f"no answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")
        return Outcome(None, error)

    async def _post(
        self, target: Target, address: IPAddress, body: bytes, headers: dict[str, str]
    ) -> Outcome:
        """POST to ``address`` (one that was checked), naming the host in ``Host`` and,
        for https, in SNI and certificate verification."""
        url = httpx.URL(target.url)
        pinned = url.copy_with(host=str(address))
        sni = url.raw_host.decode("ascii")  # IDNA form of the host name
        extensions = {"sni_hostname": sni} if target.scheme == "https" else {}
        request_headers = {**headers, "Host": url.netloc.decode("ascii")}
        async with self._http().stream(
            "POST", pinned, content=body, headers=request_headers, extensions=extensions
        ) as response:
            code = response.status_code
            if 200 <= code < 300:
                return Outcome(code, None)
            if 300 <= code < 400:
                location = response.headers.get("location", "")[:300]
                return Outcome(code, f"HTTP {code}: redirect to {location!r} not followed")
            snippet = await _read_some(response, RESPONSE_SNIPPET_BYTES)
            return Outcome(code, f"HTTP {code}" + (f": {snippet}" if snippet else ""))


async def _read_some(response: httpx.Response, limit: int) -> str:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit].decode("utf-8", "replace").strip()
