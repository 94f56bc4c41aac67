"""Content hashes of files (the score cache's keys, weights identities)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks by `hashlib.file_digest`)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
