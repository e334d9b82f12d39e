"""The signatures of Google Health's notifications.

Google's webhooks service signs the body of every request it sends to a subscriber: the
``GOOGLE-HEALTH-API-SIGNATURE`` header (``X-HEALTHAPI-SIGNATURE`` in the API reference's
wording; either is read) holds, base64-encoded, a Tink signature of the raw body: one
version byte, the signing key's id (4 bytes, big-endian), then the ECDSA (NIST P-256,
SHA-256, DER) signature. The public keys are a Tink JSON keyset Google publishes
(``KEYSET_URL``) and rotates every 30 days. It is checked with Tink, Google's own
library for that format (it refuses a keyset carrying private material, disabled keys
and a key id that does not match).

The keyset is kept per process: fetched on first use, again after ``REFRESH_S``, and
at once when a signature names a key it does not hold (a rotation), at most every
``REFETCH_S`` so forged key ids cannot make it fetch in a loop. When a fetch fails, the
keyset held is used for up to ``STALE_S``; with none usable the notification cannot be
checked (503: Google delivers it again later).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import tink
from tink import json_proto_keyset_format, signature

log = logging.getLogger(__name__)

KEYSET_URL = "https://www.gstatic.com/googlehealthapi/webhooks/webhooks_public_keyset.json"
#: The header names Google's documentation gives for it (lower case, as Starlette keeps them).
HEADERS = ("google-health-api-signature", "x-healthapi-signature")
REFRESH_S = 3600.0
REFETCH_S = 60.0
STALE_S = 7 * 86400.0
#: Tink's prefix: a version byte (1) and the key id (4 bytes, big-endian).
_PREFIX = 5
_TINK_VERSION = 1

signature.register()


class Unverified(Exception):
    """The signature is missing or does not verify: why."""


class KeysUnavailable(Exception):
    """No keyset could be had to check the signature with."""


@dataclass(slots=True)
class _Keyset:
    url: str
    ids: frozenset[int]
    verifier: signature.PublicKeyVerify
    fetched_at: float


async def fetch_keyset(url: str) -> str:
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http:
        answer = await http.get(url)
    answer.raise_for_status()
    return answer.text


def _parse(url: str, text: str, now: float) -> _Keyset:
    handle = json_proto_keyset_format.parse_without_secret(text)
    ids = frozenset(int(k["keyId"]) for k in json.loads(text).get("key", []))
    return _Keyset(url, ids, handle.primitive(signature.PublicKeyVerify), now)


def _key_id(raw: bytes) -> int:
    if len(raw) <= _PREFIX or raw[0] != _TINK_VERSION:
        raise Unverified("the signature is not a Tink signature")
    return int.from_bytes(raw[1:_PREFIX], "big")


def signature_of(headers: dict[str, str]) -> str | None:
    return next((headers[h] for h in HEADERS if headers.get(h)), None)


class SignatureKeys:
    """Google's public keys, kept for the process, and the check of a signature."""

    def __init__(self, fetch: Callable[[str], Awaitable[str]] = fetch_keyset,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._fetch = fetch
        self._clock = clock
        self._keyset: _Keyset | None = None
        self._tried_at = float("-inf")
        self._lock = asyncio.Lock()

    async def verify(self, url: str | None, header: str | None, body: bytes) -> None:
        """Return when ``header`` is Google's signature of ``body``; ``Unverified`` or
        ``KeysUnavailable`` otherwise."""
        if not header:
            raise Unverified("the notification carries no signature")
        try:
            raw = base64.b64decode(header.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Unverified("the signature is not base64") from None
        key_id = _key_id(raw)
        keyset = await self._keys(url or KEYSET_URL, key_id)
        try:
            keyset.verifier.verify(raw, body)
        except tink.TinkError:
            raise Unverified("the signature does not match the body") from None

    async def _keys(self, url: str, key_id: int) -> _Keyset:
        async with self._lock:
            held, now = self._keyset, self._clock()
            if held is not None and held.url != url:  # another address configured
                held, self._keyset, self._tried_at = None, None, float("-inf")
            usable = held is not None and now - held.fetched_at <= STALE_S
            if held is not None and now - held.fetched_at < REFRESH_S and key_id in held.ids:
                return held
            if now - self._tried_at >= REFETCH_S:
                self._tried_at = now
                try:
                    self._keyset = _parse(url, await self._fetch(url), now)
                    return self._keyset
                except (httpx.HTTPError, tink.TinkError, ValueError, KeyError, TypeError) as exc:
                    log.warning("google health keyset not fetched", extra={"error": str(exc)})
            if held is None or not usable:
                raise KeysUnavailable("Google's signature keys cannot be fetched now.")
            return held
