"""`njit`: numba's `njit(nogil=True, cache=True)` that still works where numba can write no cache.

numba caches compiled kernels next to the source (`__pycache__`), else under NUMBA_CACHE_DIR or the user's cache
folder (~/.cache/numba); where none of them is writable (a read-only install run by a user without a writable
home, a locked-down container) `cache=True` makes numba raise RuntimeError at import. Then the kernel is compiled
in memory in each process instead (same code, same values; a few seconds more per process) and a warning says
how to avoid that: point NUMBA_CACHE_DIR at a writable folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numba

log = logging.getLogger(__name__)
_warned: list[str] = []


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """numba.njit(nogil=True, cache=True, **options), falling back to cache=False when no cache folder is
    writable."""
    def decorate(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(nogil=True, cache=True, **options)(fn)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
            if "cannot cache" not in str(exc):
                raise
            if not _warned:
                _warned.append(fn.__module__)
                log.warning("numba cannot cache compiled kernels (%s): they are compiled again in every process; "
                            "set NUMBA_CACHE_DIR to a writable folder to keep them", exc)
            return numba.njit(nogil=True, cache=False, **options)(fn)
    return decorate
