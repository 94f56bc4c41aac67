"""Private link tokens: random, stored only as sha256, compared in constant time.

A juror token reads `<juror id>.<43 url-safe characters>` (256 random bits); the admin token
`admin.<...>`. The juror id part only selects the row; the whole token must match the stored hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ADMIN_PREFIX = "admin"
_DUMMY_HASH = hashlib.sha256(b"no such juror").hexdigest()


def new_token(owner: str) -> str:
    return f"{owner}.{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_owner(token: str) -> str | None:
    """The owner part of a well-formed token, else None (nothing else is trusted before the hash check)."""
    if not isinstance(token, str) or len(token) > 200 or token.count(".") != 1:
        return None
    owner, secret = token.split(".")
    if not owner or len(secret) < 20:
        return None
    return owner


def matches(token: str, stored_hash: str | None) -> bool:
    """Constant-time check of a token against a stored hash (a missing hash still costs one comparison)."""
    return hmac.compare_digest(hash_token(token), stored_hash or _DUMMY_HASH) and stored_hash is not None
