"""The run folder contract (docs/design.md, "The run folder and run.json"): what a participant submits, written
by pp-attack (`submission/run_folder.py`, through `new_run_meta` and `write_run_json`) and read by the evaluator
(`evaluator/intake/runs.py`, through `check_run_json`, `Limits` and `RunIssue`); pp-attack reads its own run.json
back (resume, finalize) through the same rules (`read_run_json`).

    runs/<run>/            or runs/<run>.zip (files at its root, or in one folder named like the zip)
      <id>.png | <id>.jpg  one per original <id>.png: the original's width and height, 8-bit RGB
                           (`IMAGE_EXTENSIONS`, lowercase)
      run.json             `RUN_JSON`, below

run.json is a strict JSON object with the keys `REQUIRED_KEYS`: `{"team", "run", "method", "params", "biqa",
"created", "kit_version", "seed"}`. Types enforced here: team, run, method, biqa, kit_version are non-empty strings;
params is an object; created is an ISO 8601 date-time string; seed is an integer or null. Extra keys are
allowed (kept in the parsed dict; pp-attack adds its status, shards, the originals' identity, the library
versions under "versions" (older kits: "libraries"), the task rules, ...). NaN/Infinity and duplicate keys are
refused (not strict JSON).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.common.atomic import write_bytes_atomic
from evaluator.common.versions import VERSIONS_KEY, kit_version, library_versions

RUN_JSON = "run.json"
IMAGE_EXTENSIONS = (".png", ".jpg")
REQUIRED_KEYS = ("team", "run", "method", "params", "biqa", "created", "kit_version", "seed")
_STRING_KEYS = ("team", "run", "method", "biqa", "kit_version")
_EXAMPLE = ('{"team": "...", "run": "...", "method": "...", "params": {...}, "biqa": "brisque", '
            '"created": "2026-01-31T12:00:00Z", "kit_version": "0.1.0", "seed": 0}')


@dataclass(frozen=True)
class Limits:
    """Ceilings on what a submission may make the evaluator read (MEPP20 images are ~512x384, a few Mpx at most).

    `max_ratio` is the zip-bomb rule: a member's uncompressed size over its compressed size; it applies to
    members larger than `ratio_floor_bytes` (a tiny file cannot be a bomb).
    """

    max_members: int = 2000
    max_total_bytes: int = 2 * 1024**3
    max_file_bytes: int = 64 * 1024**2
    max_pixels: int = 40_000_000
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 1024**2
    max_run_json_bytes: int = 1024**2


@dataclass(frozen=True)
class RunIssue:
    """One problem of a run: `file` (name inside the run, or the run itself), what is wrong, what to do."""

    file: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}; {self.fix}"


class _StrictJSONError(ValueError):
    pass


def _finite_float(text: str) -> float:
    """A JSON number as float; one that overflows to infinity (1e999) is refused like NaN and Infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError(f"contains {text}, which overflows to infinity")
    return value


def _no_constants(token: str) -> Any:
    raise _StrictJSONError(f"contains {token}, which is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _StrictJSONError(f"has the key {key!r} twice")
        out[key] = value
    return out


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_types(meta: dict[str, Any]) -> list[RunIssue]:
    issues: list[RunIssue] = []

    def bad(key: str, want: str) -> None:
        got = meta[key]
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        issues.append(RunIssue(RUN_JSON, f"key '{key}' must be {want}, got {_type_name(got)} {shown}",
                               f"set '{key}' to {want}"))

    for key in _STRING_KEYS:
        if key in meta and not (isinstance(meta[key], str) and meta[key].strip()):
            bad(key, "a non-empty string")
    if "params" in meta and not isinstance(meta["params"], dict):
        bad("params", "an object (the attack's settings, {} if none)")
    if "seed" in meta and meta["seed"] is not None and (
        not isinstance(meta["seed"], int) or isinstance(meta["seed"], bool)
    ):
        bad("seed", "an integer or null")
    if "created" in meta:
        created = meta["created"]
        ok = isinstance(created, str)
        if ok:
            try:
                datetime.fromisoformat(created)
            except ValueError:
                ok = False
        if not ok:
            bad("created", "an ISO 8601 date-time string such as \"2026-01-31T12:00:00Z\"")
    return issues


def check_run_json(data: bytes) -> tuple[dict[str, Any] | None, list[RunIssue]]:
    """Parse and check the bytes of `run.json`; return (the object or None, the problems found)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [RunIssue(RUN_JSON, f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                               "save it as UTF-8 JSON")]
    try:
        meta = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates,
                          parse_float=_finite_float)
    except _StrictJSONError as exc:
        return None, [RunIssue(RUN_JSON, f"is not strict JSON: it {exc}", "write it with json.dump defaults")]
    except json.JSONDecodeError as exc:
        return None, [RunIssue(RUN_JSON, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                               f"fix the syntax; expected an object like {_EXAMPLE}")]
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit conversion limit
        return None, [RunIssue(RUN_JSON, f"is not usable JSON ({exc})", f"write plain values, like {_EXAMPLE}")]
    except RecursionError:
        return None, [RunIssue(RUN_JSON, "is nested too deeply to parse", f"write a flat object like {_EXAMPLE}")]
    if not isinstance(meta, dict):
        return None, [RunIssue(RUN_JSON, f"is {_type_name(meta)}, not a JSON object",
                               f"write one object like {_EXAMPLE}")]
    issues: list[RunIssue] = []
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        issues.append(RunIssue(RUN_JSON, f"is missing the key(s) {', '.join(missing)}",
                               f"add them; required keys: {', '.join(REQUIRED_KEYS)}"))
    issues.extend(_check_types(meta))
    return meta, issues


def read_run_json(folder: str | Path) -> tuple[dict[str, Any] | None, list[RunIssue]]:
    """Read `folder/run.json` by `check_run_json`'s rules (the evaluator's and pp-attack's one reader); return
    (the object or None, the problems found). A file that cannot be read is one problem."""
    path = Path(folder) / RUN_JSON
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [RunIssue(RUN_JSON, f"cannot be read ({exc.strerror or exc})",
                               "check that the run folder holds a readable run.json")]
    return check_run_json(data)


# -- the writer's side ------------------------------------------------------------------------------------------
def utc_now() -> str:
    """The current UTC time as run.json writes it ("created", "finished"): `2026-01-31T12:00:00Z`."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def new_run_meta(*, team: str, run: str, method: str, params: dict[str, Any], biqa: str, seed: int | None,
                 **extra: Any) -> dict[str, Any]:
    """run.json's content: the contract's keys (`REQUIRED_KEYS` order; "created" is now, "kit_version" the
    installed kit's), then `extra` in its order, then the library versions under `VERSIONS_KEY`."""
    meta: dict[str, Any] = {"team": team, "run": run, "method": method, "params": params, "biqa": biqa,
                            "created": utc_now(), "kit_version": kit_version(), "seed": seed}
    meta.update(extra)
    meta.setdefault(VERSIONS_KEY, library_versions())
    return meta


def write_run_json(folder: str | Path, meta: dict[str, Any]) -> None:
    """Write `folder/run.json` atomically as strict JSON (NaN and infinities refused), indented."""
    write_bytes_atomic(Path(folder) / RUN_JSON, (json.dumps(meta, indent=2, allow_nan=False) + "\n").encode())
