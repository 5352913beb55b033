"""Password hashes: mlgate's Argon2id, and stock basic-auth's Werkzeug hashes at a bounded
cost (an imported hash with a huge work factor must not make login attempts expensive)."""

from __future__ import annotations

import time

import pytest
from werkzeug.security import generate_password_hash

from auth.hashing import hash_password, needs_rehash, password_hash_usable, verify_password


@pytest.mark.parametrize("method", ["scrypt", "pbkdf2:sha256", "pbkdf2"])
def test_stock_hashes_verify_and_ask_for_a_rehash(method: str) -> None:
    stored = generate_password_hash("s3cret-pw", method)
    assert password_hash_usable(stored)
    assert verify_password(stored, "s3cret-pw") and not verify_password(stored, "other")
    assert needs_rehash(stored)


def test_own_hashes_verify_and_stay() -> None:
    stored = hash_password("s3cret-pw")
    assert verify_password(stored, "s3cret-pw") and not needs_rehash(stored)


@pytest.mark.parametrize("stored", [
    "pbkdf2:sha256:20000000$salt$00",  # 5 s per attempt
    "scrypt:1048576:8:1$salt$00",  # 1 GiB per attempt
    "scrypt:32768:8:64$salt$00",
    "$argon2id$v=19$m=262144,t=20,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "pbkdf2:sha256:x$salt$00", "scrypt:0:8:1$s$00", "plain-text-password", "", "!",
])
def test_hashes_beyond_stock_costs_or_unknown_are_refused_at_once(stored: str) -> None:
    assert not password_hash_usable(stored)
    started = time.perf_counter()
    assert not verify_password(stored, "anything")
    assert time.perf_counter() - started < 0.05
