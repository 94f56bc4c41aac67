"""A persistent score cache (SQLite) so that rerunning `pp-evaluate` only scores what is new.

An entry is keyed by (kind, content, rules hash, model hash, kit version):
- kind: what was computed ("clean" score of an original, "jpeg" score of a submitted image, "fidelity");
- content: the sha256 of the file bytes the value was computed from (for fidelity: submitted + original);
- rules hash: the task rules that change the value (`rules_hash`), model hash: the BIQA parameters
  (`model_hash`), kit version: the installed kit, so that a new release never reuses old numbers.
  A kind whose value does not depend on the rules or the model stores `NOT_USED` there (clean scores do not
  depend on the JPEG rules; PSNR/SSIM depend on neither), so changing those does not throw them away.
Values are JSON objects. Each `put_many` is one SQLite transaction, so an interrupted run loses at most the
batch in flight and never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evaluator.common.errors import ResultsError
from evaluator.config import TaskConfig

SCHEMA_VERSION = 1
NOT_USED = "-"


class ScoreCacheError(ResultsError, RuntimeError):
    """The cache file cannot be opened or is not a score cache (the message says which file and what to do)."""


def _sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def rules_hash(task: TaskConfig) -> str:
    """Hash of the rules that change a score: the JPEG rules, the BIQA name and the official pre-processing chain
    when it does more than the task's JPEG (not the threshold or the gate; a JPEG-only chain hashes as before)."""
    rules = task.to_dict()
    keyed = {"jpeg": rules["jpeg"], "biqa.model": rules["biqa"]["model"]}
    chain = rules.get("preprocess", {}).get("chain")
    if chain is not None and chain != f"jpeg{rules['jpeg']['quality']}":
        keyed["preprocess.chain"] = chain
    return _sha256_json(keyed)


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over the model class and every parameter and buffer (name, dtype, shape, bytes), in key order."""
    h = hashlib.sha256()
    cls = type(model)
    h.update(f"{cls.__module__}.{cls.__qualname__}\n".encode())
    info = getattr(model, "info", None)
    if info is not None and getattr(info, "weights_sha256", None):
        h.update(f"weights:{info.weights_sha256}\n".encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_key(model: torch.nn.Module) -> str:
    """The cache's model part: `model_hash` plus how the scores were computed, where that changes them: the device
    type of the model's tensors (CPU and CUDA kernels round differently) and the torch thread count, unless the
    model is registered `thread_independent` (brisque, niqe, piqe: bit-identical for any count, tested); so a rerun
    with other `--threads` or `--device` never serves a number computed another way."""
    state = model.state_dict()
    device = next(iter(state.values())).device.type if state else "cpu"
    info = getattr(model, "info", None)
    threads = "any" if getattr(info, "thread_independent", False) else str(torch.get_num_threads())
    return _sha256_json({"model": model_hash(model), "device": device, "threads": threads})


@dataclass(frozen=True)
class CacheKeyContext:
    """The parts of a key shared by every entry of one evaluation."""

    rules: str
    model: str
    kit: str


class ScoreCache:
    """SQLite-backed `(kind, content) -> dict` store under a fixed `CacheKeyContext`."""

    def __init__(self, path: str | Path, context: CacheKeyContext):
        self.path = Path(path)
        self.context = context
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            # WAL + NORMAL: a commit is atomic and the file never corrupts; a power cut may drop the last
            # batches, which are simply computed again. Avoids one fsync per batch.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (kind TEXT NOT NULL, content TEXT NOT NULL, rules TEXT NOT NULL,"
                " model TEXT NOT NULL, kit TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (kind, content, rules, model, kit))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._db.commit()
            (schema,) = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ScoreCacheError(
                f"{self.path}: not a usable score cache ({exc}); delete the file and rerun (it is rebuilt)"
            ) from exc
        if schema != str(SCHEMA_VERSION):
            raise ScoreCacheError(
                f"{self.path}: score cache schema {schema}, this kit writes {SCHEMA_VERSION}; delete the file and rerun"
            )

    def _scope(self, rules: bool, model: bool) -> tuple[str, str, str]:
        ctx = self.context
        return (ctx.rules if rules else NOT_USED, ctx.model if model else NOT_USED, ctx.kit)

    def get_many(self, kind: str, contents: Iterable[str], *, rules: bool = True, model: bool = True
                 ) -> dict[str, dict[str, Any]]:
        """The cached values for those `contents` of `kind` that are present (`rules`/`model`: key uses them)."""
        r, m, k = self._scope(rules, model)
        found: dict[str, dict[str, Any]] = {}
        for content in contents:
            row = self._db.execute(
                "SELECT value FROM entries WHERE kind=? AND content=? AND rules=? AND model=? AND kit=?",
                (kind, content, r, m, k),
            ).fetchone()
            if row is not None:
                found[content] = json.loads(row[0])
        return found

    def get(self, kind: str, content: str, *, rules: bool = True, model: bool = True) -> dict[str, Any] | None:
        return self.get_many(kind, [content], rules=rules, model=model).get(content)

    def put_many(self, kind: str, values: Mapping[str, Mapping[str, Any]], *, rules: bool = True,
                 model: bool = True) -> None:
        """Store `content -> value` entries of `kind` in one transaction (replacing equal keys)."""
        r, m, k = self._scope(rules, model)
        rows = [
            (kind, content, r, m, k, json.dumps(dict(value), sort_keys=True))
            for content, value in values.items()
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
