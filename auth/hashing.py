"""Password and API-token hashing.

Passwords use Argon2id (argon2-cffi, the reference implementation's binding): slow and
salted, because passwords are guessable. Verifying one costs tens of milliseconds, so the
gateway caches successful verifications briefly. Hashes imported from stock basic-auth
(Werkzeug's ``scrypt:`` and ``pbkdf2:`` forms) verify through Werkzeug until the user's
next login replaces them (:func:`needs_rehash`).

API tokens are 256-bit random secrets, so a slow hash buys nothing: a SHA-256 digest cannot
be brute-forced back to a secret of that entropy. A token reads ``mlg_<id>_<secret>``; the
public ``<id>`` finds the stored row in one indexed lookup, and the digests are compared with
:func:`hmac.compare_digest` so the comparison leaks no timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from werkzeug.security import check_password_hash

__all__ = [
    "TOKEN_PREFIX",
    "hash_password",
    "needs_rehash",
    "new_token",
    "parse_token",
    "password_hash_usable",
    "token_digest",
    "token_matches",
    "verify_password",
]

TOKEN_PREFIX = "mlg_"
_TOKEN = re.compile(r"^mlg_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

# RFC 9106's second recommended option (64 MiB would be the first; 19 MiB suits a server
# verifying for many clients, as OWASP's cheat sheet suggests).
_WERKZEUG = ("scrypt:", "pbkdf2:")
MAX_PBKDF2_ROUNDS = 2_000_000
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _werkzeug_cost_ok(stored_hash: str) -> bool:
    """Whether an imported hash's work factor is within what stock ever chose (Werkzeug's
    defaults: scrypt N=2^15, r=8, p=1; PBKDF2 up to 1,000,000 rounds), with headroom. A
    larger one, planted in an imported database, would make each login attempt for that
    name cost seconds of CPU or gigabytes of memory."""
    method = stored_hash.split("$", 1)[0].split(":")
    try:
        if method[0] == "scrypt":
            n, r, p = (int(x) for x in method[1:4]) if len(method) == 4 else (2**15, 8, 1)
            return 0 < n <= 2**16 and 0 < r <= 16 and 0 < p <= 2
        if method[0] == "pbkdf2":
            rounds = int(method[2]) if len(method) == 3 else 1_000_000
            return 0 < rounds <= MAX_PBKDF2_ROUNDS
    except ValueError:
        return False
    return False


def password_hash_usable(stored_hash: str) -> bool:
    """Whether ``stored_hash`` is one that :func:`verify_password` will check: mlgate's own
    Argon2id, or Werkzeug's scrypt/PBKDF2 (stock basic-auth) at a bounded cost."""
    if stored_hash.startswith(_WERKZEUG):
        return _werkzeug_cost_ok(stored_hash)
    try:
        params = argon2.extract_parameters(stored_hash)
    except InvalidHashError:
        return False
    return params.memory_cost <= _HASHER.memory_cost and params.time_cost <= _HASHER.time_cost


def verify_password(stored_hash: str, password: str) -> bool:
    if not password_hash_usable(stored_hash):
        return False
    if stored_hash.startswith(_WERKZEUG):
        try:
            return check_password_hash(stored_hash, password)
        except ValueError:  # a malformed or unknown method
            return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True for a hash that is not Argon2id at today's parameters (an imported one)."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def new_token() -> tuple[str, str, str]:
    """(token shown once, token id, digest to store)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{token_id}_{secret}", token_id, token_digest(secret)


def parse_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed mlgate token, else None (not one of ours)."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_matches(stored_digest: str, secret: str) -> bool:
    return hmac.compare_digest(stored_digest, token_digest(secret))
