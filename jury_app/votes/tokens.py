"""Private link tokens: random, stored only as sha256, compared in constant time.

A juror token reads `<juror id>.<43 url-safe characters>` (256 random bits); the admin token
`admin.<...>`. The juror id part only selects the row; the whole token must match the stored hash.

`LoginGuard` counts wrong tokens per client (one guard per page): the first FREE_FAILURES wrong tokens in a row
are answered "not valid" at once; after the k-th, the client's wrong tokens are refused, with the time left and
not counted, for min(BASE_DELAY_S * 2**(k - FREE_FAILURES), MAX_DELAY_S) seconds. It never holds back a right
token: every token is checked (`context.guarded_login`), since behind a reverse proxy all jurors share one
address and a client sending wrong tokens must not lock the others out. Against guessing, a 256-bit token needs
no backoff; the guard keeps the count that the log lines report. `log_safe` is how attacker-controlled text (the
owner part of a wrong token, a client address) is written into a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

ADMIN_PREFIX = "admin"
_DUMMY_HASH = hashlib.sha256(b"no such juror").hexdigest()
FREE_FAILURES = 5
BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
MAX_CLIENTS = 10_000


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


def monotonic() -> float:
    """The guard's clock (seconds)."""
    return time.monotonic()


def log_safe(text: object, limit: int = 80) -> str:
    """`text` (cut to `limit` characters) as one printable ASCII token: quotes, newlines, escape sequences,
    bidi overrides and other non-ASCII characters written as Python escapes, so it cannot forge a log line."""
    return ascii(str(text)[:limit])


class LoginGuard:
    """Per-client count of wrong tokens and the wait after them (see the module docstring); thread-safe, in
    memory.

    `wait(client)` -> seconds during which this client's wrong tokens are refused uncounted (0: none); `failed(client)`
    -> the number of failures in a row after recording one. A right token does not reset the count: the address
    may be shared. At most `max_clients` clients are remembered (the oldest are forgotten first).
    """

    def __init__(self, *, free: int = FREE_FAILURES, base_s: float = BASE_DELAY_S, max_s: float = MAX_DELAY_S,
                 max_clients: int = MAX_CLIENTS, clock: Callable[[], float] | None = None) -> None:
        self.free, self.base_s, self.max_s, self.max_clients = free, base_s, max_s, max_clients
        self.clock = clock or (lambda: monotonic())  # looked up per call, so tests can freeze it
        self._fails: dict[str, tuple[int, float]] = {}  # client -> (failures in a row, time of the last one)
        self._lock = threading.Lock()

    def delay_after(self, failures: int) -> float:
        """Seconds a client must wait after its `failures`-th wrong token in a row."""
        if failures < self.free:
            return 0.0
        return min(self.base_s * 2.0 ** (failures - self.free), self.max_s)

    def wait(self, client: str) -> float:
        with self._lock:
            count, last = self._fails.get(client, (0, 0.0))
        return max(0.0, last + self.delay_after(count) - self.clock()) if count else 0.0

    def failed(self, client: str) -> int:
        with self._lock:
            count = self._fails.pop(client, (0, 0.0))[0] + 1
            self._fails[client] = (count, self.clock())  # re-inserted last: the dict's order is the age
            while len(self._fails) > self.max_clients:
                del self._fails[next(iter(self._fails))]
        return count
