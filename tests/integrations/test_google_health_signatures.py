"""The check of Google Health's signatures on its own, with the stand-in's keys and a
keyset source that can fail: a keyset held is used while its address cannot be reached
(up to ``STALE_S``), then notifications cannot be checked; a keyset carrying a private
key is refused; another configured address starts again."""

from __future__ import annotations

import json

import httpx
import pytest
from tink import json_proto_keyset_format, secret_key_access

from fieldwatch.integrations.webhooks.google_signature import (
    REFRESH_S,
    STALE_S,
    KeysUnavailable,
    SignatureKeys,
    Unverified,
)
from standins.google_health import SIGNATURE_HEADER, GoogleHealth

URL = "https://keys.example/keyset.json"


class Source:
    """A keyset address that answers the stand-in's keyset, or fails when ``down``."""

    def __init__(self, google: GoogleHealth) -> None:
        self.google = google
        self.down = False
        self.asked: list[str] = []

    async def __call__(self, url: str) -> str:
        self.asked.append(url)
        if self.down:
            raise httpx.ConnectError("unreachable")
        return self.google.public_keyset()


def _signed(google: GoogleHealth, delivery: object) -> tuple[bytes, str]:
    body, headers = google.signed(delivery)
    return body, headers[SIGNATURE_HEADER]


async def test_a_held_keyset_outlives_an_outage_for_a_while() -> None:
    google, clock = GoogleHealth(), [0.0]
    source = Source(google)
    keys = SignatureKeys(fetch=source, clock=lambda: clock[0])
    body, signature = _signed(google, [{"data": {"healthUserId": "u"}}])
    await keys.verify(URL, signature, body)
    source.down = True
    clock[0] += REFRESH_S  # due for a refresh, which fails: the held keyset still serves
    await keys.verify(URL, signature, body)
    assert len(source.asked) == 2
    clock[0] = STALE_S + 1  # too old to trust now
    with pytest.raises(KeysUnavailable):
        await keys.verify(URL, signature, body)
    source.down = False
    clock[0] += 3600
    await keys.verify(URL, signature, body)  # back once the address answers


async def test_nothing_to_check_with_without_a_keyset() -> None:
    google = GoogleHealth()
    source = Source(google)
    source.down = True
    keys = SignatureKeys(fetch=source)
    body, signature = _signed(google, [])
    with pytest.raises(KeysUnavailable):
        await keys.verify(URL, signature, body)
    with pytest.raises(KeysUnavailable):  # not asked again at once
        await keys.verify(URL, signature, body)
    assert len(source.asked) == 1
    with pytest.raises(Unverified, match="no signature"):  # checked before any key
        await keys.verify(URL, None, body)
    with pytest.raises(Unverified, match="not a Tink signature"):
        await keys.verify(URL, "AAAA", body)


async def test_a_keyset_with_private_material_is_refused() -> None:
    google = GoogleHealth()
    private = json_proto_keyset_format.serialize(google.signing, secret_key_access.TOKEN)
    assert json.loads(private)["key"][0]["keyData"]["keyMaterialType"] == "ASYMMETRIC_PRIVATE"

    async def leaked(url: str) -> str:
        return private

    body, signature = _signed(google, [])
    with pytest.raises(KeysUnavailable):
        await SignatureKeys(fetch=leaked).verify(URL, signature, body)


async def test_another_address_starts_again() -> None:
    google = GoogleHealth()
    source = Source(google)
    keys = SignatureKeys(fetch=source)
    body, signature = _signed(google, [])
    await keys.verify(URL, signature, body)
    await keys.verify(URL + "?v=2", signature, body)
    await keys.verify(None, signature, body)  # unset: Google's own address
    assert source.asked == [URL, URL + "?v=2",
                            "https://www.gstatic.com/googlehealthapi/webhooks/"
                            "webhooks_public_keyset.json"]  # fmt: skip
