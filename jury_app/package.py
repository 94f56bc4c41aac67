"""The jury package: the folder `pp-evaluate` writes under `results/jury/` and `pp-jury` reads.

Format (version 1). Every path is relative to the package folder and must stay inside it.

    jury/
      manifest.json   public: no run name in a candidate's id or file name, nothing derived from one
      key.json        organizer only: which run made each candidate (never read by the juror page)
      images/<candidate id>.jpg   the JPEG-90 files that were scored, named by candidate id
      originals/<image id>.jpg    optional: only needed when task.show_original is true
      votes.sqlite    created by pp-jury (the vote store)
      ranking.csv     written by `pp-jury rank`

manifest.json:

    {"version": 1,
     "task": {"most": 3, "least": 2, "show_original": false},
     "images": [
        {"image": "<image id>",
         "original": null | "originals/<image id>.jpg",
         "candidates": [{"id": "<opaque random id>", "file": "images/<id>.jpg"}, ...]},
        ...]}

- `image` ids are unique, 1..200 characters without '/', '\\' or control characters (the original's stem).
- an optional top-level "note" (a string, e.g. why the picks were shrunk) is shown to the organizer.
- candidate `id`s are unique across the whole manifest, 8..64 characters of [A-Za-z0-9_-], drawn at random
  (e.g. `secrets.token_hex(8)`); they must not be derived from the run name (no hash of it either).
- `file` is a relative path inside the package; `original` is null or a relative path inside the package,
  and must be non-null for every image when `task.show_original` is true.
- images keep the order in which jurors see them; candidates are re-shuffled per juror by the app.

key.json:

    {"candidates": {"<candidate id>": {"run": "<run id>", "image": "<image id>"}, ...}}

- exactly the manifest's candidate ids; `image` equals the image the candidate is listed under;
  at most one candidate per (run, image).

`load_package(dir)` and `load_key(dir, package)` check all of this and raise `PackageError` naming the file,
the entry, what is wrong and what to do.

Blinding: `juror_facing_values(manifest)` lists the manifest values that tell the candidates of one image
apart (candidate ids and file names); `blinding_problems(manifest, runs)` finds a run name in one of them.
The writer (`evaluator/jury_export.py`) and the server (`check_blinding`, `check_servable`, run by
`pp-jury serve`) call these same functions, so `pp-evaluate` cannot write a package that `pp-jury serve`
refuses. A run name that merely occurs in the manifest's keys, fixed path parts (`images/`, `.jpg`) or image
ids (shared by every candidate of an image) tells runs apart in no way, and is allowed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

MANIFEST_NAME = "manifest.json"
KEY_NAME = "key.json"
STORE_NAME = "votes.sqlite"
RANKING_NAME = "ranking.csv"
FORMAT_VERSION = 1

IMAGE_ID_RE = re.compile(r"^(?!\.{1,2}$)[^/\\\x00-\x1f]{1,200}$")
CANDIDATE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MIN_RUN_NAME_SEARCH = 3  # shorter run names ("a", "01") occur by chance in random ids: not searched for
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PackageError(ValueError):
    """A jury package that cannot be used; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Candidate:
    id: str
    file: Path  # absolute, inside the package


@dataclass(frozen=True)
class JuryImage:
    image: str
    original: Path | None
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class JuryTask:
    most: int = 3
    least: int = 2
    show_original: bool = False


@dataclass(frozen=True)
class JuryPackage:
    root: Path
    task: JuryTask
    images: tuple[JuryImage, ...]
    note: str | None = None

    @property
    def store_path(self) -> Path:
        return self.root / STORE_NAME

    @property
    def image_ids(self) -> tuple[str, ...]:
        return tuple(im.image for im in self.images)

    def image(self, image_id: str) -> JuryImage:
        for im in self.images:
            if im.image == image_id:
                return im
        raise KeyError(image_id)

    def candidate_ids(self, image_id: str) -> tuple[str, ...]:
        return tuple(c.id for c in self.image(image_id).candidates)


@dataclass(frozen=True)
class CandidateKey:
    run: str
    image: str


@dataclass(frozen=True)
class JuryKey:
    """Organizer-only mapping candidate id -> (run, image)."""

    candidates: dict[str, CandidateKey]

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(sorted({c.run for c in self.candidates.values()}))

    def run_of(self, candidate_id: str) -> str:
        return self.candidates[candidate_id].run


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise PackageError(f"{path}: {what} is missing; run `pp-evaluate` to write the jury package, "
                           f"or point pp-jury at the folder that holds {path.name}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: not valid UTF-8 JSON ({exc}); rewrite it with `pp-evaluate`.") from exc


def _inside(root: Path, rel: Any, where: str) -> Path:
    """Resolve a relative path from the manifest, refusing anything that leaves the package."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or "\\" in rel:
        raise PackageError(f"{where}: {rel!r} is not a relative path with '/' separators; "
                           "write paths relative to the package folder, e.g. 'images/<id>.jpg'.")
    parts = Path(rel).parts
    if ".." in parts:
        raise PackageError(f"{where}: {rel!r} leaves the package folder ('..'); keep files inside it.")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise PackageError(f"{where}: {rel!r} resolves outside the package folder (symlink?); "
                           "keep files inside it.")
    if not path.is_file():
        raise PackageError(f"{where}: file {rel!r} does not exist in {root}; re-run `pp-evaluate` "
                           "or copy the whole jury folder.")
    return path


def _task(raw: Any, where: str) -> JuryTask:
    if not isinstance(raw, dict):
        raise PackageError(f"{where}: 'task' must be an object {{most, least, show_original}}.")
    unknown = set(raw) - {"most", "least", "show_original"}
    if unknown:
        raise PackageError(f"{where}: unknown keys in 'task': {sorted(unknown)}; allowed: most, least, "
                           "show_original.")
    most, least, show = raw.get("most", 3), raw.get("least", 2), raw.get("show_original", False)
    for name, value, low in (("most", most, 1), ("least", least, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise PackageError(f"{where}: task.{name} = {value!r}; it must be an integer >= {low}.")
    if not isinstance(show, bool):
        raise PackageError(f"{where}: task.show_original = {show!r}; it must be true or false.")
    return JuryTask(most=most, least=least, show_original=show)


def load_package(directory: str | Path) -> JuryPackage:
    """Read and validate `DIR/manifest.json` (format above); raises PackageError."""
    root = Path(directory)
    if not root.is_dir():
        raise PackageError(f"{root}: not a folder; pass the jury package folder (results/jury).")
    root = root.resolve()
    mpath = root / MANIFEST_NAME
    raw = _read_json(mpath, "the jury manifest")
    if not isinstance(raw, dict):
        raise PackageError(f"{mpath}: the top level must be an object with version, task, images.")
    if raw.get("version") != FORMAT_VERSION:
        raise PackageError(f"{mpath}: version {raw.get('version')!r} is not supported; this pp-jury reads "
                           f"version {FORMAT_VERSION}. Re-run `pp-evaluate` with the same kit version.")
    task = _task(raw.get("task"), str(mpath))
    images_raw = raw.get("images")
    if not isinstance(images_raw, list) or not images_raw:
        raise PackageError(f"{mpath}: 'images' must be a non-empty list; no image was selected for the jury "
                           "(are there qualified runs?).")
    images: list[JuryImage] = []
    seen_images: set[str] = set()
    seen_candidates: set[str] = set()
    for i, entry in enumerate(images_raw):
        where = f"{mpath}: images[{i}]"
        if not isinstance(entry, dict):
            raise PackageError(f"{where} must be an object {{image, original, candidates}}.")
        image_id = entry.get("image")
        if not isinstance(image_id, str) or not IMAGE_ID_RE.match(image_id):
            raise PackageError(f"{where}: image id {image_id!r} must be 1..200 characters without '/', '\\' "
                               "or control characters.")
        if image_id in seen_images:
            raise PackageError(f"{where}: image id {image_id!r} is listed twice; list each image once.")
        seen_images.add(image_id)
        original = entry.get("original")
        original_path = None if original is None else _inside(root, original, f"{where}.original")
        if task.show_original and original_path is None:
            raise PackageError(f"{where}: task.show_original is true but image {image_id!r} has no original; "
                               "add 'original': 'originals/<id>.jpg' or set show_original to false.")
        cands_raw = entry.get("candidates")
        if not isinstance(cands_raw, list) or not cands_raw:
            raise PackageError(f"{where}: 'candidates' must be a non-empty list of {{id, file}}.")
        cands: list[Candidate] = []
        for j, c in enumerate(cands_raw):
            cwhere = f"{where}.candidates[{j}]"
            if not isinstance(c, dict) or set(c) != {"id", "file"}:
                raise PackageError(f"{cwhere} must be an object with exactly the keys 'id' and 'file' "
                                   "(no run names or other metadata in the public manifest).")
            cid = c["id"]
            if not isinstance(cid, str) or not CANDIDATE_ID_RE.match(cid):
                raise PackageError(f"{cwhere}: candidate id {cid!r} must be 8..64 characters of "
                                   "[A-Za-z0-9_-], drawn at random.")
            if cid in seen_candidates:
                raise PackageError(f"{cwhere}: candidate id {cid!r} is used twice; ids must be unique.")
            seen_candidates.add(cid)
            cands.append(Candidate(id=cid, file=_inside(root, c["file"], f"{cwhere}.file")))
        images.append(JuryImage(image=image_id, original=original_path, candidates=tuple(cands)))
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise PackageError(f"{mpath}: 'note' must be a string or absent.")
    return JuryPackage(root=root, task=task, images=tuple(images), note=note)


def load_key(directory: str | Path, package: JuryPackage | None = None) -> JuryKey:
    """Read `DIR/key.json` and check it covers exactly the manifest's candidates; raises PackageError."""
    package = package or load_package(directory)
    kpath = package.root / KEY_NAME
    raw = _read_json(kpath, "the organizer key (which run made each candidate)")
    if not isinstance(raw, dict) or not isinstance(raw.get("candidates"), dict):
        raise PackageError(f"{kpath}: must be an object {{\"candidates\": {{id: {{run, image}}}}}}.")
    expected = {c.id: im.image for im in package.images for c in im.candidates}
    got = raw["candidates"]
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise PackageError(f"{kpath}: does not match {MANIFEST_NAME}: missing ids {missing[:5]}, unknown ids "
                           f"{extra[:5]}; key and manifest must come from the same `pp-evaluate` run.")
    out: dict[str, CandidateKey] = {}
    seen: set[tuple[str, str]] = set()
    for cid in sorted(got):
        entry = got[cid]
        if not isinstance(entry, dict) or not isinstance(entry.get("run"), str) or not entry["run"] \
                or not isinstance(entry.get("image"), str):
            raise PackageError(f"{kpath}: candidates[{cid!r}] must be {{\"run\": str, \"image\": str}}.")
        if entry["image"] != expected[cid]:
            raise PackageError(f"{kpath}: candidate {cid!r} is image {entry['image']!r} in the key but "
                               f"{expected[cid]!r} in the manifest; regenerate the package.")
        pair = (entry["run"], entry["image"])
        if pair in seen:
            raise PackageError(f"{kpath}: run {pair[0]!r} has two candidates for image {pair[1]!r}; "
                               "one version per run and image.")
        seen.add(pair)
        out[cid] = CandidateKey(run=entry["run"], image=entry["image"])
    return JuryKey(candidates=out)


def run_name_in(value: str, runs: Iterable[str]) -> str | None:
    """The first run name (of MIN_RUN_NAME_SEARCH+ characters) that occurs in `value`, case-insensitively."""
    low = value.lower()
    return next((r for r in runs if len(r) >= MIN_RUN_NAME_SEARCH and r.lower() in low), None)


def juror_facing_values(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, value) for every manifest value that belongs to one candidate: its `id` and its file name.

    These are the only manifest values that differ between the candidates of one image, so the only ones
    that could tell runs apart if they reached a juror. The juror page sends neither (a juror gets letters,
    the pick counts and the served image bytes, `jury_app/web/served_image.py`); they are kept free of run names
    all the same. Not listed, because they cannot tell runs apart: the JSON keys, the fixed path parts
    (`images/`, the image extension), image ids and `original` (one per image, shared by its candidates),
    the task and the note. `manifest` is the parsed manifest.json (a writer's dict or the file's content).
    """
    out: list[tuple[str, str]] = []
    images = manifest.get("images") if isinstance(manifest, Mapping) else None
    for i, entry in enumerate(images if isinstance(images, list) else []):
        cands = entry.get("candidates") if isinstance(entry, Mapping) else None
        for j, cand in enumerate(cands if isinstance(cands, list) else []):
            if not isinstance(cand, Mapping):
                continue
            where = f"images[{i}].candidates[{j}]"
            if isinstance(cand.get("id"), str):
                out.append((f"{where}.id", cand["id"]))
            if isinstance(cand.get("file"), str):
                name = cand["file"].replace("\\", "/").rsplit("/", 1)[-1]
                stem = next((name[:-len(s)] for s in _IMAGE_SUFFIXES if name.lower().endswith(s)), name)
                out.append((f"{where}.file", stem))
    return out


def blinding_problems(manifest: Mapping[str, Any], runs: Iterable[str]) -> list[str]:
    """One line per juror-facing value (`juror_facing_values`) that contains a run name."""
    runs = list(runs)
    problems = []
    for where, value in juror_facing_values(manifest):
        run = run_name_in(value, runs)
        if run is not None:
            problems.append(f"{where} = {value!r} contains the run name {run!r}")
    return problems


def check_blinding(package: JuryPackage, key: JuryKey) -> None:
    """Raise PackageError if a run name occurs in a juror-facing value of the manifest (`blinding_problems`)."""
    path = package.root / MANIFEST_NAME
    problems = blinding_problems(_read_json(path, "the jury manifest"), key.runs)
    if problems:
        raise PackageError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                           else "") + "; candidate ids and file names must be opaque. Regenerate the package "
                           "with `pp-evaluate`, which draws random ids.")


def check_servable(directory: str | Path) -> tuple[JuryPackage, JuryKey | None]:
    """Every check `pp-jury serve` makes before serving: the manifest, and when key.json is there, the key and
    the blinding. Returns (package, key or None); raises PackageError. The writer runs it on what it wrote."""
    package = load_package(directory)
    if not (package.root / KEY_NAME).is_file():
        return package, None
    key = load_key(package.root, package)
    check_blinding(package, key)
    return package, key
