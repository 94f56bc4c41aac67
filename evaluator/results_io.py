"""Writing the results folder: plain CSV cells, and an all-or-nothing commit of a staged folder.

Everything of one evaluation is first written into `OUT/.staging-<random>/`. Only when all of it is written does
`commit_staged` move each entry into `OUT/` with `os.replace` (files) and two renames (the `jury/` folder); if
anything fails or is interrupted before that, the staging folder is deleted and the previous results in `OUT/`
are left exactly as they were. A `jury/` folder that already holds votes (`votes.sqlite`) is never deleted: it
is moved aside to `OUT/jury-previous-<UTC time>/`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
OLD_PREFIX = ".old-"
VOTES_FILE = "votes.sqlite"


def cell(value: Any) -> str:
    """One CSV cell: '' for None/NaN, 'true'/'false', 'inf', shortest round-trip repr for floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write `rows` (dicts with exactly `columns`) as UTF-8 CSV with a header line."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row[c]) for c in columns])


def remove_stale(out_dir: Path) -> None:
    """Delete staging folders left by an evaluation that was killed (they never hold committed results)."""
    for entry in out_dir.glob(f"{STAGING_PREFIX}*"):
        log.info("removing unfinished results from an interrupted evaluation: %s", entry)
        shutil.rmtree(entry, ignore_errors=True)
    for entry in out_dir.glob(f"{OLD_PREFIX}*"):
        shutil.rmtree(entry, ignore_errors=True)


def new_staging(out_dir: Path) -> Path:
    """A fresh, empty staging folder inside `out_dir`."""
    staging = out_dir / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
    staging.mkdir()
    return staging


def _replace_dir(src: Path, dst: Path) -> None:
    if not dst.exists():
        os.replace(src, dst)
        return
    if (dst / VOTES_FILE).exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        keep = dst.with_name(f"{dst.name}-previous-{stamp}")
        log.warning("%s holds jury votes; moving it to %s instead of deleting it", dst, keep)
        os.replace(dst, keep)
        os.replace(src, dst)
        return
    old = dst.with_name(f"{OLD_PREFIX}{dst.name}-{secrets.token_hex(4)}")
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def commit_staged(staging: Path, out_dir: Path, names: Sequence[str]) -> None:
    """Move the staged entries `names` into `out_dir` (replacing previous ones), then drop the staging folder."""
    for name in names:
        src, dst = staging / name, out_dir / name
        if src.is_dir():
            _replace_dir(src, dst)
        else:
            os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)
