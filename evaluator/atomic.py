"""Atomic file writes for every result the kit produces: a temporary file in the target's own folder (same file
system), flushed and fsynced, then `os.replace`d over the target. A crash leaves either the old file or the new
one, never a torn one; the temporary file is removed when writing fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; on a clean exit it replaces `path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
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
