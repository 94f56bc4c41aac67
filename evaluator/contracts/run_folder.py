"""`run.json` of a run: strict JSON object with the contract's keys and types.

Contract (design.md, "Run folder contract"): `{"team", "run", "method", "params", "biqa", "created",
"kit_version", "seed"}`. Types enforced here: team, run, method, biqa, kit_version are non-empty strings;
params is an object; created is an ISO 8601 date-time string; seed is an integer or null. Extra keys are
allowed (kept in the parsed dict). NaN/Infinity and duplicate keys are refused (not strict JSON).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from evaluator.common.text import RunIssue

RUN_JSON = "run.json"
REQUIRED_KEYS = ("team", "run", "method", "params", "biqa", "created", "kit_version", "seed")
_STRING_KEYS = ("team", "run", "method", "biqa", "kit_version")
_EXAMPLE = ('{"team": "...", "run": "...", "method": "...", "params": {...}, "biqa": "brisque", '
            '"created": "2026-01-31T12:00:00Z", "kit_version": "0.1.0", "seed": 0}')


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
