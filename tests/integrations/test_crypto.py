"""Credentials sealed at rest: AES-GCM with a key ring, context-bound, rotatable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fieldwatch.core.settings import Settings
from fieldwatch.integrations.crypto import (
    KEY_FILE,
    EncryptionKeyError,
    KeyRing,
    SealedValueError,
    load_key_ring,
    new_key,
    rotate_key_file,
)

SECRET = b'{"access_token": "at-123", "refresh_token": "rt-456"}'


def test_sealed_value_opens_with_its_context_only() -> None:
    ring = KeyRing.of(new_key())
    sealed = ring.seal(SECRET, "ws1:conn1")
    assert b"at-123" not in sealed.encode() and "rt-456" not in sealed
    assert sealed.startswith(f"fw1.{ring.current_id}.")
    assert ring.open(sealed, "ws1:conn1") == SECRET
    with pytest.raises(SealedValueError):
        ring.open(sealed, "ws1:conn2")  # copied into another row


def test_two_seals_of_the_same_value_differ() -> None:
    ring = KeyRing.of(new_key())
    assert ring.seal(SECRET, "c") != ring.seal(SECRET, "c")


def test_tampered_value_is_refused() -> None:
    ring = KeyRing.of(new_key())
    sealed = ring.seal(SECRET, "c")
    body = sealed.rsplit(".", 1)[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (sealed.rsplit(".", 1)[0] + "." + flipped, "plain text", "fw1.x", ""):
        with pytest.raises(SealedValueError):
            ring.open(bad, "c")


def test_rotation_new_key_seals_old_keys_open() -> None:
    old, new = new_key(), new_key()
    sealed_old = KeyRing.of(old).seal(SECRET, "c")
    ring = KeyRing.of(f"{new}, {old}")
    assert ring.open(sealed_old, "c") == SECRET
    assert ring.needs_reseal(sealed_old)
    resealed = ring.seal(SECRET, "c")
    assert not ring.needs_reseal(resealed)
    with pytest.raises(SealedValueError, match="key id"):
        KeyRing.of(old).open(resealed, "c")  # the old ring alone cannot open it


@pytest.mark.parametrize(
    "text",
    ["", "your-encryption-key", "c2hvcnQ", new_key() + ",nope"],
    ids=["empty", "a-phrase", "too-short", "bad-second-key"],
)
def test_bad_keys_are_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(EncryptionKeyError, match="key"):
        KeyRing.of(text)


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ring = load_key_ring(settings)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_ring(settings).ids == ring.ids  # the same key on the next start
    sealed = ring.seal(SECRET, "c")
    rotated = rotate_key_file(settings)
    assert rotated.ids[1:] == ring.ids and rotated.current_id != ring.current_id
    assert load_key_ring(settings).open(sealed, "c") == SECRET
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_configured_keys_win_over_the_file(tmp_path: Path) -> None:
    key = new_key()
    ring = load_key_ring(Settings(data_dir=tmp_path, encryption_key=key))
    assert ring == KeyRing.of(key)
    assert not (tmp_path / KEY_FILE).exists()
    with pytest.raises(EncryptionKeyError, match="FIELDWATCH_ENCRYPTION_KEY"):
        rotate_key_file(Settings(data_dir=tmp_path, encryption_key=key))
