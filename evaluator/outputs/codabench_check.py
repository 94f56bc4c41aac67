"""`pp-evaluate codabench-check BUNDLE [--submission RUN] [--keep DIR]`: check a Codabench bundle offline.

The bundle zip is untrusted input: it is read through `evaluator.intake.safe_zip` (member names, kinds, sizes and
the zip-bomb ratio checked before anything is read; nothing outside the scratch folder is ever written) into a
scratch folder, and then checked against what Codabench's v2 unpacker (`competitions/unpackers/v2.py`), its
leaderboard models (`leaderboards/models.py`) and the compute worker (`compute_worker.py`) need:
- competition.yaml: valid YAML, a mapping, `version: 2`; the required keys and their types (title, image, terms,
  pages, phases, tasks, leaderboards); no unknown top-level key (Codabench ignores it silently: `leaderboard:`
  instead of `leaderboards:` loses the leaderboard); every file it names present (and inside the bundle);
- the leaderboard: column keys unique, each under 36 characters (at most 35: `Column.key` is
  `CharField(max_length=36)`; column titles at most 36, the leaderboard's title 64), `sorting` asc or desc, and
  the keys equal to the scorer's scores.json keys (`evaluator.outputs.codabench.SCORE_KEYS`): a key the scorer
  never writes is an empty column, a score without a column is lost;
- the scoring program: `metadata.yaml` with a `command` that runs the kit's scorer
  (`python -m evaluator.outputs.codabench /app/input /app/output [options]`, options the scorer accepts, every
  `/app/program/...` file present);
- the reference data: the originals (`index_originals`) and `task.toml` (`load_task`), and a weights file for a
  model that needs one.
Each problem names the file, the key and the fix. With `--submission`, the bundle's own command runs (with this
Python, no shell) in Codabench's layout: `input/ref` (the reference data), `input/res` (the submission,
unpacked as Codabench does, through the same safe reader), `program` (the scoring program), `output`; its
scores.json is then checked the way Codabench stores it (every value a finite number of `DecimalField(20, 10)`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from evaluator.common.errors import EXIT_OK, EXIT_USAGE, IntakeError, KitError, exit_code_help
from evaluator.common.text import did_you_mean, show_name
from evaluator.contracts.run_folder import Limits
from evaluator.outputs.codabench import WORKER_METADATA, WORKER_METADATA_KEYS
from evaluator.outputs.codabench_bundle import (CODABENCH_COLUMN_KEY_FIELD, COMPETITION_YAML, MAX_COLUMN_KEY,
                                                MAX_COLUMN_TITLE, MAX_LEADERBOARD_KEY, MAX_LEADERBOARD_TITLE,
                                                METADATA_YAML, SCORER_MODULE, SCORING_COMMAND, TASK_TOML)

#: what a bundle may make the checker read (a KonCept512 checkpoint is a few hundred MB)
BUNDLE_LIMITS = Limits(max_members=20_000, max_total_bytes=8 * 1024**3, max_file_bytes=2 * 1024**3)
#: the top-level keys Codabench's v2 unpacker reads (`V2Unpacker.__init__` and `unpack`)
KNOWN_KEYS = ("version", "title", "description", "image", "terms", "docker_image", "registration_auto_approve",
              "enable_detailed_results", "show_detailed_results_in_submission_panel",
              "show_detailed_results_in_leaderboard", "auto_run_submissions",
              "can_participants_make_submissions_public", "make_programs_available", "make_input_data_available",
              "competition_type", "fact_sheet", "reward", "contact_email", "forum_enabled", "queue", "pages",
              "phases", "tasks", "solutions", "leaderboards")
#: the phase keys Codabench's v2 unpacker reads (`_unpack_phases`), and `solutions` (its own competition dumps)
PHASE_KEYS = ("index", "name", "description", "start", "end", "max_submissions_per_day", "max_submissions",
              "auto_migrate_to_this_phase", "hide_output", "hide_prediction_output", "hide_score_output",
              "execution_time_limit", "tasks", "public_data", "starting_kit", "solutions")
_BOOL_KEYS = ("registration_auto_approve", "enable_detailed_results", "show_detailed_results_in_submission_panel",
              "show_detailed_results_in_leaderboard", "auto_run_submissions",
              "can_participants_make_submissions_public", "make_programs_available", "make_input_data_available",
              "forum_enabled")
_TASK_FILES = ("scoring_program", "reference_data", "input_data", "ingestion_program")
_PYTHONS = ("python", "python3")  # bare: the image's interpreter on PATH, never a file of the bundle
_PYTHON_SUFFIXES = (".py", ".pyc", ".pyw", ".pyd", ".so")
#: Codabench's `leaderboards.models.Leaderboard.SUBMISSION_RULES` (default "Add")
SUBMISSION_RULES = ("Add", "Add_And_Delete", "Add_And_Delete_Multiple", "Force_Last", "Force_Latest_Multiple",
                    "Force_Best")
#: Codabench's MAX_EXECUTION_TIME_LIMIT default: a run on the default queue gets min(this, execution_time_limit)
DEFAULT_QUEUE_TIME_LIMIT_S = 600
_DECIMAL_MAX = 1e10  # SubmissionScore.score: DecimalField(max_digits=20, decimal_places=10)
_LEGACY_VARS = (("$input", "/app/input"), ("$output", "/app/output"), ("$program", "/app/program"),
                ("$hidden", "/app/input/ref"), ("$predictions", "/app/input/res"), ("$tmp", "/app/output"))


class BundleCheckError(IntakeError, ValueError):
    """The bundle, the submission or --keep cannot be used at all (the message says which and what to do)."""


@dataclass(frozen=True)
class Problem:
    """One problem of the bundle: the `file` in it, the `key` (a YAML path such as `leaderboards[0].columns[2].key`,
    or '' for the file itself), what is wrong and the fix."""

    file: str
    key: str
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.problem}; fix: {self.fix}"


@dataclass
class BundleCheck:
    """What `check_bundle` found: the problems, and where the bundle was unpacked (for `run_submission`)."""

    bundle: Path
    root: Path
    problems: list[Problem] = field(default_factory=list)
    config: dict[str, Any] | None = None
    program: Path | None = None
    reference: Path | None = None
    command: list[str] | None = None
    columns: list[str] = field(default_factory=list)
    passes_weights: bool = False  # the scoring command passes --biqa-weights

    @property
    def ok(self) -> bool:
        return not self.problems


# -- reading the zip -----------------------------------------------------------------------------------------------
def safe_extract(zip_path: Path, dest: Path, limits: Limits = BUNDLE_LIMITS) -> list[Problem]:
    """Unpack `zip_path` into the new folder `dest` through `safe_zip` (names, kinds, sizes, bomb ratio checked;
    regular files and folders only); every member refused is one problem, the others are written."""
    from evaluator.intake.safe_zip import ZipReadError, open_checked, read_member

    label = zip_path.name
    problems: list[Problem] = []
    dest.mkdir(parents=True, exist_ok=False)
    try:
        fp = open(zip_path, "rb")
    except OSError as exc:
        raise BundleCheckError(f"{zip_path}: cannot be opened ({exc.strerror or exc}); pass an existing zip") from exc
    with fp:
        zf, entries, issues = open_checked(zip_path, fp, limits)
        problems.extend(Problem(label, issue.file, issue.problem, issue.fix) for issue in issues)
        if zf is None:
            return problems
        with zf:
            root = dest.resolve()
            for entry in entries:
                target = (dest / entry.name).resolve()
                if root != target and root not in target.parents:  # safe_zip refuses such names; never trust it alone
                    problems.append(Problem(label, show_name(entry.name), "points outside the bundle",
                                            "remove it from the zip"))
                    continue
                both = Problem(label, show_name(entry.name), "is both a file and a folder in the zip (one member "
                               "is named like another's folder)", "re-create the zip with each name once")
                try:
                    if entry.is_dir:
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    try:
                        data = read_member(zf, entry.name, limits.max_file_bytes)
                    except ZipReadError as exc:
                        problems.append(Problem(label, show_name(entry.name), str(exc), "re-create the zip"))
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.is_dir():
                        problems.append(both)
                        continue
                    with open(target, "xb") as f:
                        f.write(data)
                except (FileExistsError, NotADirectoryError):  # `x` a file and `x/y` (or `x/`) a member too
                    problems.append(both)
    return problems


# -- checking competition.yaml -------------------------------------------------------------------------------------
class _Checker:
    def __init__(self, check: BundleCheck) -> None:
        self.c = check

    def problem(self, file: str, key: str, problem: str, fix: str) -> None:
        self.c.problems.append(Problem(file, key, problem, fix))

    def typed(self, mapping: dict, key: str, kind: type | tuple[type, ...], where: str, want: str, *,
              required: bool = True, file: str = COMPETITION_YAML) -> Any:
        """mapping[key] if present and of `kind` (bool is never an int here), else a problem and None."""
        path = f"{where}.{key}" if where else key
        if key not in mapping:
            if required:
                self.problem(file, path, "is missing (Codabench requires it)", f"add `{key}:` ({want})")
            return None
        value = mapping[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.problem(file, path, f"must be {want}, got {type(value).__name__} {_short(value)}",
                         f"set `{key}:` to {want}")
            return None
        if isinstance(value, str) and not value.strip():
            self.problem(file, path, "is empty", f"set `{key}:` to {want}")
            return None
        return value

    def listed(self, mapping: dict, key: str, where: str, want: str, *, required: bool = True) -> list:
        value = self.typed(mapping, key, list, where, f"a list of {want}", required=required)
        if value is not None and not value and required:
            self.problem(COMPETITION_YAML, key, "is an empty list", f"list at least one of {want}")
        return value or []

    def file_ref(self, value: Any, key: str, *, kinds: str = "file", file: str = COMPETITION_YAML) -> Path | None:
        """A path the YAML names: relative, inside the bundle, present (a file, or a folder or .zip for data)."""
        if not isinstance(value, str) or not value.strip():
            self.problem(file, key, f"must be a path inside the bundle, got {_short(value)}",
                         "set it to the file's path relative to competition.yaml")
            return None
        parts = value.replace("\\", "/").rstrip("/").split("/")
        if value.startswith("/") or ".." in parts or "\\" in value:
            self.problem(file, key, f"'{show_name(value)}' points outside the bundle",
                         "use a path relative to competition.yaml, without '..'")
            return None
        path = self.c.root / value
        if kinds == "file" and not path.is_file():
            self.problem(file, key, f"names '{show_name(value)}', which is not in the bundle",
                         f"add {show_name(value)} to the zip or fix the path")
            return None
        if kinds == "data" and not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip")):
            self.problem(file, key, f"names '{show_name(value)}', which is not a folder or .zip in the bundle",
                         f"add the folder {show_name(value)} to the zip or fix the path")
            return None
        return path

    def text_file(self, value: Any, key: str) -> None:
        path = self.file_ref(value, key)
        if path is None:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.problem(str(value), "", "is not UTF-8 text", "save the page as UTF-8 markdown or HTML")
            return
        if not text.strip():
            self.problem(str(value), "", "is empty (Codabench refuses an empty page)", "write the page")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_yaml(path: Path, file: str, chk: _Checker) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        chk.problem(file, "", f"is not UTF-8 text ({exc.reason})", "save it as UTF-8")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        chk.problem(file, "", f"is not valid YAML ({what}{at})",
                    "fix the syntax (indentation, a ':' after each key, quotes around values with ': ')")
    return None


def _check_top(chk: _Checker, cfg: dict) -> None:
    version = cfg.get("version")
    if str(version) != "2" or not isinstance(version, (int, str)) or isinstance(version, bool):
        # Codabench picks the unpacker by str(version): only 2 or '2' is version 2 (2.0 is '2.0': refused on upload)
        chk.problem(COMPETITION_YAML, "version", f"must be 2 (a Codabench bundle), got {_short(version)}",
                    "set `version: 2` at the top")
    for key in cfg:
        if key not in KNOWN_KEYS:
            chk.problem(COMPETITION_YAML, show_name(str(key)), "is not a key Codabench reads (it would be ignored)",
                        "remove it" + did_you_mean(str(key), KNOWN_KEYS))
    chk.typed(cfg, "title", str, "", "the competition's title")
    image = chk.typed(cfg, "image", str, "", "the logo's path (PNG or JPEG)")
    if image is not None:
        path = chk.file_ref(image, "image")
        if path is not None and path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            chk.problem(COMPETITION_YAML, "image", f"'{show_name(image)}' is not a PNG or JPEG logo",
                        "point `image:` at a .png or .jpg file")
    terms = chk.typed(cfg, "terms", str, "", "the terms page's path")
    if terms is not None:
        chk.text_file(terms, "terms")
    docker = chk.typed(cfg, "docker_image", str, "", "the Docker image with the kit installed", required=False)
    if docker is None and "docker_image" not in cfg:
        chk.problem(COMPETITION_YAML, "docker_image", "is missing: Codabench's default image "
                    "(codalab/codalab-legacy) does not have the kit, so every submission would fail",
                    "build the bundle's Dockerfile, push the image and set `docker_image:` to it")
    elif docker is not None and "/" not in docker.split("@")[0]:  # localhost:5000/x has one, python:3.11 not
        # no account or registry: docker.io/library/<name>, Docker Hub's official images, which never hold the kit
        chk.problem(COMPETITION_YAML, "docker_image", f"'{show_name(docker)}' names no account or registry, so "
                    f"Codabench pulls docker.io/library/{show_name(docker)} (an official image, without the kit) and "
                    "every submission fails", "build the bundle's Dockerfile, push it under your account or registry "
                    "(e.g. docker.io/you/pixel-privacy:1.0) and set `docker_image:` to it (codabench-bundle --image)")
    for key in _BOOL_KEYS:
        chk.typed(cfg, key, bool, "", "true or false", required=False)
    # required in practice: the v2 unpacker iterates `pages` without a default (a TypeError on upload without it)
    for i, page in enumerate(chk.listed(cfg, "pages", "", "pages ({title, file})")):
        where = f"pages[{i}]"
        if not isinstance(page, dict):
            chk.problem(COMPETITION_YAML, where, "must be a mapping {title, file}",
                        "write `- title: ...` / `file: ...`")
            continue
        chk.typed(page, "title", str, where, "the page's title")
        if chk.typed(page, "file", str, where, "the page's path") is not None:
            chk.text_file(page["file"], f"{where}.file")


def _check_tasks(chk: _Checker, cfg: dict) -> tuple[set[int], dict | None]:
    indexes: set[int] = set()
    first: dict | None = None
    for i, task in enumerate(chk.listed(cfg, "tasks", "", "tasks ({index, name, scoring_program, ...})")):
        where = f"tasks[{i}]"
        if not isinstance(task, dict):
            chk.problem(COMPETITION_YAML, where, "must be a mapping", "write `- index: 0` / `name: ...` / ...")
            continue
        index = chk.typed(task, "index", int, where, "an integer")
        if index is not None:
            if index in indexes:
                chk.problem(COMPETITION_YAML, f"{where}.index", f"{index} is used twice",
                            "give each task its own index")
            indexes.add(index)
        if "key" in task:  # a task already on the server: nothing of the bundle is used
            continue
        chk.typed(task, "name", str, where, "the task's name")
        for key in _TASK_FILES:
            if key in task or key == "scoring_program":
                path = chk.file_ref(task.get(key), f"{where}.{key}", kinds="data")
                if path is not None and first is None:
                    first = task
    return indexes, first


def _check_phases(chk: _Checker, cfg: dict, task_indexes: set[int]) -> None:
    ends: list[tuple[str, datetime | None, datetime | None]] = []
    for i, phase in enumerate(chk.listed(cfg, "phases", "", "phases ({index, name, start, tasks})")):
        where = f"phases[{i}]"
        if not isinstance(phase, dict):
            chk.problem(COMPETITION_YAML, where, "must be a mapping", "write `- index: 0` / `name: ...` / ...")
            continue
        for key in phase:
            if key not in PHASE_KEYS:
                chk.problem(COMPETITION_YAML, f"{where}.{show_name(str(key))}", "is not a phase key Codabench reads "
                            "(it would be ignored)", "remove it" + did_you_mean(str(key), PHASE_KEYS))
        chk.typed(phase, "name", str, where, "the phase's name")
        chk.typed(phase, "index", int, where, "an integer", required=False)
        times = []
        for key in ("start", "end"):
            value = phase.get(key)
            if value is None:
                if key == "start":
                    chk.problem(COMPETITION_YAML, f"{where}.start", "is missing", "add `start: 'YYYY-MM-DD HH:MM:SS'`")
                times.append(None)
                continue
            parsed = _datetime(value)
            if parsed is None:
                chk.problem(COMPETITION_YAML, f"{where}.{key}", f"{_short(value)} is not a date-time",
                            f"write `{key}: 'YYYY-MM-DD HH:MM:SS'` (UTC)")
            times.append(parsed)
        ends.append((phase.get("name", where), times[0], times[1]))
        for key in ("execution_time_limit", "max_submissions", "max_submissions_per_day"):
            value = chk.typed(phase, key, int, where, "a positive integer", required=False)
            if value is not None and value <= 0:
                chk.problem(COMPETITION_YAML, f"{where}.{key}", f"must be positive, got {value}",
                            "set a positive integer")
        for key in ("starting_kit", "public_data"):
            if key in phase:
                chk.file_ref(phase[key], f"{where}.{key}", kinds="data")
        tasks = chk.typed(phase, "tasks", list, where, "a list of task indexes")
        for t in tasks or []:
            if t not in task_indexes:
                chk.problem(COMPETITION_YAML, f"{where}.tasks", f"names task index {_short(t)}, which no task has",
                            f"use one of the tasks' indexes: {sorted(task_indexes)}")
    for (name_a, _, end_a), (name_b, start_b, _) in zip(ends, ends[1:]):
        if end_a is None:
            chk.problem(COMPETITION_YAML, "phases", f"phase {name_a!r} has no end but a phase follows it",
                        "give it an `end:`")
        elif start_b is not None and start_b < end_a:
            chk.problem(COMPETITION_YAML, "phases", f"phase {name_b!r} starts before {name_a!r} ends",
                        "make the phases sequential")


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if hasattr(value, "year") and hasattr(value, "month"):  # a YAML date
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
            try:
                return datetime.strptime(value, fmt)
            except ValueError:
                continue
    return None


def _check_leaderboards(chk: _Checker, cfg: dict) -> list[str]:
    from evaluator.outputs.codabench import SCORE_KEYS

    all_keys: list[str] = []
    for i, board in enumerate(chk.listed(cfg, "leaderboards", "", "leaderboards ({title, key, columns})")):
        where = f"leaderboards[{i}]"
        if not isinstance(board, dict):
            chk.problem(COMPETITION_YAML, where, "must be a mapping", "write `- title: ...` / `key: ...` / `columns:`")
            continue
        _limited(chk, board, "title", where, MAX_LEADERBOARD_TITLE, "Leaderboard.title")
        _limited(chk, board, "key", where, MAX_LEADERBOARD_KEY, "Leaderboard.key")
        rule = board.get("submission_rule", "Add")
        if rule not in SUBMISSION_RULES:
            chk.problem(COMPETITION_YAML, f"{where}.submission_rule", f"{_short(rule)} is not a Codabench submission "
                        "rule (Leaderboard.SUBMISSION_RULES)", f"use one of {', '.join(SUBMISSION_RULES)}"
                        + (did_you_mean(str(rule), SUBMISSION_RULES) if isinstance(rule, str) else ""))
        columns = chk.typed(board, "columns", list, where, "a list of columns ({title, key, index, sorting})")
        if columns is not None and not columns:
            chk.problem(COMPETITION_YAML, f"{where}.columns", "is empty (Codabench needs at least one column)",
                        "add the columns of scores.json")
        indexes, keys = [], []
        for j, col in enumerate(columns or []):
            cw = f"{where}.columns[{j}]"
            if not isinstance(col, dict):
                chk.problem(COMPETITION_YAML, cw, "must be a mapping", "write `- title: ...` / `key: ...` / `index: N`")
                continue
            _limited(chk, col, "title", cw, MAX_COLUMN_TITLE, "Column.title")
            key = _limited(chk, col, "key", cw, MAX_COLUMN_KEY, "Column.key")
            if key is None and isinstance(col.get("key"), str):
                key = col["key"]  # too long: reported; still compared with the scorer's keys below
            index = chk.typed(col, "index", int, cw, "an integer >= 0")
            if index is not None:
                if index < 0:
                    chk.problem(COMPETITION_YAML, f"{cw}.index", f"must be >= 0, got {index}",
                                "number columns 0, 1, ...")
                if index in indexes:
                    chk.problem(COMPETITION_YAML, f"{cw}.index", f"{index} is used twice",
                                "give each column its own index")
                indexes.append(index)
            sorting = col.get("sorting", "desc")
            if sorting not in ("asc", "desc"):
                chk.problem(COMPETITION_YAML, f"{cw}.sorting", f"must be asc or desc, got {_short(sorting)}",
                            "asc: smaller is better; desc: larger is better")
            chk.typed(col, "precision", int, cw, "an integer (decimals shown)", required=False)
            chk.typed(col, "hidden", bool, cw, "true or false", required=False)
            if "computation" in col:
                if col["computation"] not in ("avg", "sum", "min", "max"):
                    chk.problem(COMPETITION_YAML, f"{cw}.computation", f"must be avg, sum, min or max, got "
                                f"{_short(col['computation'])}", "fix it or remove the computation")
                if not col.get("computation_indexes"):
                    chk.problem(COMPETITION_YAML, f"{cw}.computation_indexes", "is missing for a computed column",
                                "list the indexes of the columns it is computed from")
            if key is not None:
                if key in keys:
                    chk.problem(COMPETITION_YAML, f"{cw}.key", f"'{show_name(key)}' is used twice",
                                "give each column its own key")
                keys.append(key)
        primary = board.get("primary_index", 0)
        if indexes and primary not in indexes:
            chk.problem(COMPETITION_YAML, f"{where}.primary_index", f"{_short(primary)} is no column's index",
                        f"use one of {sorted(indexes)}")
        all_keys.extend(keys)
        computed = {c.get("key") for c in columns or [] if isinstance(c, dict) and "computation" in c}
        plain = [k for k in keys if k not in computed]
        for k in plain:
            if k not in SCORE_KEYS:
                chk.problem(COMPETITION_YAML, f"{where}.columns key '{show_name(k)}'",
                            "is not a key of the scorer's scores.json, so this column stays empty",
                            f"use one of the scorer's keys ({', '.join(SCORE_KEYS)})" + did_you_mean(k, SCORE_KEYS))
        for k in SCORE_KEYS:
            if k not in plain:
                chk.problem(COMPETITION_YAML, f"{where}.columns", f"has no column for the scorer's key '{k}', so "
                            "that score is lost", f"add a column with `key: {k}`")
    return all_keys


def _limited(chk: _Checker, mapping: dict, key: str, where: str, limit: int, field_name: str) -> str | None:
    """mapping[key], a string of at most `limit` characters; a column key must stay under Codabench's 36."""
    value = chk.typed(mapping, key, str, where, f"a string of at most {limit} characters")
    if value is not None and len(value) > limit:
        column_key = key == "key" and "columns" in where
        rule = (f"a column key must stay under {CODABENCH_COLUMN_KEY_FIELD} characters ({field_name}, "
                f"max_length={CODABENCH_COLUMN_KEY_FIELD})" if column_key
                else f"over Codabench's limit of {limit} ({field_name}, max_length={limit})")
        chk.problem(COMPETITION_YAML, f"{where}.{key}", f"'{show_name(value)}' has {len(value)} characters: {rule}",
                    f"shorten it to {limit} characters or fewer" + (
                        " (and write the same key into scores.json)" if column_key else ""))
        return None
    return value


# -- the scoring program and the reference data ----------------------------------------------------------------
def _data_dir(chk: _Checker, path: Path, name: str) -> Path | None:
    """A task's folder, or its .zip unpacked (safely) next to the bundle's folder."""
    if path.is_dir():
        return path
    if not path.is_file():  # reported by file_ref
        return None
    dest = chk.c.root.parent / f"{name}-unzipped"
    chk.c.problems.extend(safe_extract(path, dest))
    return dest


def _check_program(chk: _Checker, task: dict) -> None:
    program = _data_dir(chk, chk.c.root / task["scoring_program"], "scoring_program")
    if program is None:
        return
    chk.c.program = program
    folder = task['scoring_program'].rstrip('/')
    label = f"{folder}/{METADATA_YAML}"
    for entry in sorted(program.iterdir()):
        # the command runs `python -m` in /app/program, which Python puts first on sys.path: a module or package
        # here (evaluator/, torch/, numpy.py, ...) is imported instead of the kit and its libraries, on Codabench
        # and in this check alike; the kit's scoring program is metadata.yaml and at most a weights file
        if entry.is_dir() or entry.suffix.lower() in _PYTHON_SUFFIXES:
            chk.problem(f"{folder}/{show_name(entry.name)}", "", "is a Python module or folder in the scoring "
                        "program: the command runs `python -m` in /app/program, so it would be imported before the "
                        "kit installed in the image", "remove it (the scoring program holds only metadata.yaml "
                        "and, for a model that needs one, its weights file)")
    meta_path = program / METADATA_YAML
    if not meta_path.is_file():
        meta_path = program / "metadata"
    if not meta_path.is_file():
        chk.problem(label, "", "is missing (the compute worker runs the command it names)",
                    f"add {label} with `command: {SCORING_COMMAND}`")
        return
    meta = _load_yaml(meta_path, label, chk)
    if meta is None:
        return
    if not isinstance(meta, dict) or not isinstance(meta.get("command"), str) or not meta["command"].strip():
        chk.problem(label, "command", "is missing or not a string", f"write `command: {SCORING_COMMAND}`")
        return
    command = meta["command"]
    for var, value in _LEGACY_VARS:
        command = command.replace(var, value)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        chk.problem(label, "command", f"cannot be split into arguments ({exc})", f"write `command: {SCORING_COMMAND}`")
        return
    if len(argv) < 5 or argv[0] not in _PYTHONS or argv[1:3] != ["-m", SCORER_MODULE]:  # the image's python only
        chk.problem(label, "command", f"{_short(meta['command'])} does not run the kit's scorer",
                    f"write `command: {SCORING_COMMAND}` (options of `python -m {SCORER_MODULE} --help` may follow)")
        return
    from evaluator.outputs.codabench import build_parser

    try:
        args = build_parser().parse_args(argv[3:])
    except SystemExit:
        chk.problem(label, "command", f"{_short(meta['command'])} has arguments the scorer refuses",
                    f"see `python -m {SCORER_MODULE} --help`")
        return
    if str(args.input).rstrip("/") != "/app/input" or str(args.output).rstrip("/") != "/app/output":
        chk.problem(label, "command", f"reads {args.input} and writes {args.output}, not Codabench's folders",
                    "pass /app/input /app/output (Codabench mounts the reference data and submission under "
                    "/app/input/ref and /app/input/res and collects /app/output)")
    for token in argv[3:]:
        if token.startswith("/app/program/") and not (program / token[len("/app/program/"):]).is_file():
            chk.problem(label, "command", f"names {token}, which is not in the scoring program",
                        f"add {token[len('/app/program/'):]} to {task['scoring_program']}/ or fix the path")
        elif token.startswith("/") and not token.startswith(("/app/input", "/app/output", "/app/program")):
            chk.problem(label, "command", f"names {token}, outside what Codabench mounts",
                        "use /app/program/... for files of the scoring program")
    chk.c.command = argv
    chk.c.passes_weights = args.biqa_weights is not None


def _check_reference(chk: _Checker, task: dict) -> None:
    from evaluator.biqa import spec
    from evaluator.common.errors import OriginalsError
    from evaluator.config import TaskConfigError, load_task
    from evaluator.intake.runs import index_originals

    if "reference_data" not in task:
        chk.problem(COMPETITION_YAML, "tasks[0].reference_data", "is missing: the scorer reads the originals from "
                    "/app/input/ref", "add `reference_data: reference_data` and the originals in that folder")
        return
    ref = _data_dir(chk, chk.c.root / task["reference_data"], "reference_data")
    if ref is None:
        return
    chk.c.reference = ref
    name = task["reference_data"].rstrip("/")
    quiet = logging.getLogger("evaluator.intake.runs")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # reference_data/task.toml is "not an original": expected here, not news
    try:
        index_originals(ref)
    except OriginalsError as exc:
        chk.problem(name, "", f"the originals cannot be used: {exc}", "put the original <id>.png images there")
    finally:
        quiet.setLevel(level)
    task_file = ref / TASK_TOML
    try:
        rules = load_task(task_file if task_file.is_file() else None)
    except TaskConfigError as exc:
        chk.problem(f"{name}/{TASK_TOML}", _config_key(str(exc)), str(exc).split(": ", 1)[-1],
                    "fix the rules (see the kit's task.toml)")
        return
    if spec(rules.biqa.model).needs_weights and chk.c.command is not None and not chk.c.passes_weights:
        chk.problem(f"{name}/{TASK_TOML}", "biqa.model", f"'{rules.biqa.model}' needs a weights file, and the "
                    "scoring command passes none", "rebuild the bundle with --biqa-weights PATH")


def _config_key(message: str) -> str:
    if "key '" in message:
        return message.split("key '", 1)[1].split("'", 1)[0]
    return ""


def check_bundle(bundle: Path, workdir: Path) -> BundleCheck:
    """Unpack `bundle` (a zip) into `workdir/bundle` and check it; the problems are in the result."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise BundleCheckError(f"{bundle}: bundle not found; pass the zip that `pp-evaluate codabench-bundle` wrote")
    check = BundleCheck(bundle=bundle, root=Path(workdir) / "bundle")
    chk = _Checker(check)
    check.problems.extend(safe_extract(bundle, check.root))
    yaml_path = check.root / COMPETITION_YAML
    if not yaml_path.is_file():
        nested = sorted(p.relative_to(check.root) for p in check.root.glob(f"*/{COMPETITION_YAML}"))
        hint = (f"it is at {nested[0]}: zip the folder's contents, not the folder" if nested
                else "build the bundle with `pp-evaluate codabench-bundle`")
        chk.problem(COMPETITION_YAML, "", "is not at the root of the zip", hint)
        return check
    cfg = _load_yaml(yaml_path, COMPETITION_YAML, chk)
    if cfg is None:
        if not check.problems:
            chk.problem(COMPETITION_YAML, "", "is empty", "write the competition (see docs/codabench.md)")
        return check
    if not isinstance(cfg, dict):
        chk.problem(COMPETITION_YAML, "", f"is a YAML {type(cfg).__name__}, not a mapping of keys",
                    "write `version: 2`, `title: ...`, ... at the top level")
        return check
    check.config = cfg
    _check_top(chk, cfg)
    task_indexes, task = _check_tasks(chk, cfg)
    _check_phases(chk, cfg, task_indexes)
    for i, solution in enumerate(chk.listed(cfg, "solutions", "", "solutions ({index, path, tasks})", required=False)):
        if isinstance(solution, dict) and "key" not in solution:
            chk.file_ref(solution.get("path"), f"solutions[{i}].path", kinds="data")
    check.columns = _check_leaderboards(chk, cfg)
    if task is not None:
        _check_program(chk, task)
        _check_reference(chk, task)
    return check


# -- running a submission --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmissionRun:
    returncode: int
    stderr: str
    scores: dict[str, Any] | None
    problems: list[Problem]
    detailed_results: Path | None
    folders: Path
    timed_out: bool = False


def _map_path(token: str, layout: dict[str, Path]) -> str:
    for prefix, target in layout.items():
        if token == prefix or token.startswith(prefix + "/"):
            return str(target) + token[len(prefix):]
    return token


def effective_time_limit(config: dict) -> int:
    """The seconds Codabench gives a run of the first phase (`_send_to_compute_worker`): its `execution_time_limit`
    (default 600) on the competition's own `queue`, min(that, `DEFAULT_QUEUE_TIME_LIMIT_S`) on the default queue."""
    phases = config.get("phases") or [{}]
    first = phases[0] if isinstance(phases[0], dict) else {}
    limit = first.get("execution_time_limit") or DEFAULT_QUEUE_TIME_LIMIT_S
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        limit = DEFAULT_QUEUE_TIME_LIMIT_S
    return limit if config.get("queue") else min(limit, DEFAULT_QUEUE_TIME_LIMIT_S)


def run_submission(check: BundleCheck, submission: Path, folders: Path) -> SubmissionRun:
    """Lay out Codabench's folders under `folders` and run the bundle's scoring command there (this Python), within
    the time Codabench gives it (`effective_time_limit`)."""
    if check.problems or check.command is None or check.program is None or check.reference is None:
        raise BundleCheckError(f"{check.bundle}: the bundle has problems (or no usable scoring program or reference "
                               "data); fix them first: nothing of a bundle that failed the check is run")
    submission, folders = Path(submission), Path(folders).resolve()  # the command runs in program/: absolute paths
    inp, out, program = folders / "input", folders / "output", folders / "program"
    shutil.copytree(check.reference, inp / "ref")
    shutil.copytree(check.program, program)
    out.mkdir(parents=True)
    problems: list[Problem] = []
    if submission.is_dir():
        shutil.copytree(submission, inp / "res", symlinks=True)
    elif submission.is_file():  # Codabench unpacks the submission zip into input/res; here through safe_zip
        for p in safe_extract(submission, inp / "res", Limits()):
            problems.append(Problem(submission.name, p.key, p.problem, p.fix))
    else:
        raise BundleCheckError(f"{submission}: submission not found; pass a run .zip or a run folder")
    # Codabench's prediction step copies the unpacked submission to its output and adds its status file there
    # (`compute_worker.Run.push_output`); that output is the scoring step's input/res
    status = inp / "res" / WORKER_METADATA
    if status.exists() or status.is_symlink():
        problems.append(Problem(submission.name, WORKER_METADATA, "is a file Codabench's compute worker writes "
                                "itself: it would run the command it names, or fail the submission",
                                f"remove {WORKER_METADATA} from the submission"))
    else:
        status.write_text(yaml.safe_dump({key: None for key in WORKER_METADATA_KEYS}), encoding="utf-8")
    time_limit = effective_time_limit(check.config or {})
    layout = {"/app/input": inp, "/app/output": out, "/app/program": program}
    argv = [sys.executable, *(_map_path(t, layout) for t in check.command[1:])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(argv, cwd=program, env=env, capture_output=True, text=True, errors="replace",
                              timeout=time_limit)
    except subprocess.TimeoutExpired as exc:
        own_queue = bool((check.config or {}).get("queue"))
        problems.append(Problem(COMPETITION_YAML, "phases[0].execution_time_limit", f"the scoring command ran past "
                                f"{time_limit} s, so Codabench would stop it and fail the submission" + (
                                    "" if own_queue else f" (on Codabench's default queue a run gets at most "
                                    f"{DEFAULT_QUEUE_TIME_LIMIT_S} s, whatever execution_time_limit says)"),
                                "raise execution_time_limit (seconds) or score on a faster worker" if own_queue else
                                "score faster (fewer or smaller images), or run the competition on your own queue "
                                "(`queue:` in competition.yaml) with a larger execution_time_limit"))
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return SubmissionRun(-1, stderr, None, problems, None, folders, timed_out=True)
    scores = None
    scores_path = out / "scores.json"
    if proc.returncode == 0:
        try:
            scores = json.loads(scores_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(Problem("output/scores.json", "", f"cannot be read ({exc})", "report this bug"))
        else:
            problems.extend(_check_scores(scores, check.columns))
        if (out / "metadata").exists():
            problems.append(Problem("output/metadata", "", "exists: the compute worker writes this file itself and "
                                    "fails the submission when it is there", "do not write output/metadata"))
    page = out / "detailed_results.html"
    return SubmissionRun(proc.returncode, proc.stderr, scores, problems, page if page.is_file() else None,
                         folders)


def _check_scores(scores: Any, columns: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    if not isinstance(scores, dict):
        return [Problem("output/scores.json", "", "is not a JSON object", "write {\"key\": number, ...}")]
    for key, value in scores.items():
        if key not in columns:
            problems.append(Problem("output/scores.json", key, "has no leaderboard column (Codabench drops it)",
                                    f"add a column with `key: {key}` or leave the key out"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) >= _DECIMAL_MAX:
            problems.append(Problem("output/scores.json", key, f"is {_short(value)}, not a finite number under 1e10 "
                                    "(Codabench stores DecimalField(max_digits=20, decimal_places=10), NOT NULL)",
                                    "write a number, or leave the key out"))
    return problems


# -- the command -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pp-evaluate codabench-check",
        description="Check a Codabench bundle offline: competition.yaml (keys, types, every file it names), the "
        "leaderboard (column keys == the scorer's scores.json keys, under 36 characters), the scoring program's "
        "command and the reference data. With --submission, run the bundle's own scoring command on a run in "
        "Codabench's folder layout and print the scores.",
        epilog=exit_code_help() + "\n  codabench-check: 0 the bundle (and the submission) passed; 2 a problem of "
        "the bundle, the submission or --keep (each printed with its file, key and fix).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="the bundle zip")
    parser.add_argument("--submission", type=Path, default=None, help="a run (.zip as uploaded, or a folder) to score")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep input/ref, input/res, program and output here (a new or empty folder)")
    return parser


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except KitError as exc:
        print(f"pp-evaluate codabench-check: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code


def _main(args: argparse.Namespace) -> int:
    if args.keep is not None:
        if args.keep.exists() and (not args.keep.is_dir() or any(args.keep.iterdir())):
            raise BundleCheckError(f"{args.keep}: exists and is not an empty folder; pass --keep a new folder")
        if args.submission is None:
            raise BundleCheckError("--keep needs --submission (it keeps the folders the submission was scored in)")
    with tempfile.TemporaryDirectory(prefix="pp-codabench-check-") as scratch:
        check = check_bundle(args.bundle, Path(scratch))
        if not check.ok:
            _say(f"{args.bundle}: {len(check.problems)} problem(s):")
            for p in check.problems:
                _say(f"  - {show_name(str(p))}")
            return EXIT_USAGE
        _say(f"{args.bundle}: OK: competition.yaml, every file it names, {len(check.columns)} leaderboard columns = "
             f"the scorer's scores.json keys, scoring command `{' '.join(check.command or [])}`")
        if args.submission is None:
            return EXIT_OK
        folders = args.keep if args.keep is not None else Path(scratch) / "app"
        folders.mkdir(parents=True, exist_ok=True)
        run = run_submission(check, args.submission, folders)
        if run.timed_out:
            for p in run.problems:
                _say(f"  - {show_name(str(p))}")
            return EXIT_USAGE
        if run.returncode != 0:
            who = "the submission is invalid" if run.returncode == 1 else "the scoring setup is broken"
            _say(f"{args.submission}: the scoring command exited {run.returncode} ({who}):")
            for line in run.stderr.strip().splitlines()[-40:]:
                _say(f"  {show_name(line)}")
            for p in run.problems:
                _say(f"  - {show_name(str(p))}")
            return EXIT_USAGE
        for key, value in (run.scores or {}).items():
            _say(f"  {key}: {value}")
        for p in run.problems:
            _say(f"  - {show_name(str(p))}")
        if args.keep is not None:
            _say(f"scores: {run.folders / 'output' / 'scores.json'}")
            _say(f"detailed results page: {run.detailed_results}")
        else:
            _say("detailed results page: written, then removed with the scratch folders (pass --keep DIR to keep it)")
        return EXIT_USAGE if run.problems else EXIT_OK
