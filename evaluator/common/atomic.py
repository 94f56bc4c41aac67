"""Atomic file writes for every result the kit produces: a temporary file in the target's own folder (same file
system), flushed and fsynced, then `os.replace`d over the target. A crash leaves either the old file or the new
one, never a torn one; the temporary file is removed when writing fails.

The temporary file is created with mode 0666 less the process umask, like any file `open()` creates (0644 under
the usual umask 022); `tempfile.mkstemp` would make it 0600, and `os.replace` would give the result that mode.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator


def _create_temp(p: Path) -> tuple[int, str]:
    """A new, exclusive temporary sibling `.<name>.<random>.tmp` of `p`, mode 0666 & ~umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(p.parent / f".{p.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{p.parent}: cannot create a temporary file for {p.name}; remove its .{p.name}.*.tmp files")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; on a clean exit it replaces `path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    p = Path(path)
    fd, tmp = _create_temp(p)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with UTF-8 `text` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
