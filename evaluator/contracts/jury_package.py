"""The jury package contract: the folder `pp-evaluate` writes under `results/jury/` and `pp-jury` reads.

This module is the one place of the contract: its file names, `PickRule` (what a juror is asked per image), the
reader (`load_package`, `load_key`, `check_servable`), the writer's pieces (`build_manifest`, `make_folders`,
`write_candidate`, `original_path`, `write_manifest`, `write_key`: the evaluator's writer and the test fixture
`jury_app/testing/fixtures.py` both write through them), the
blinding rule (`juror_facing_values`, `blinding_problems`) and the metadata rule of the served JPEG bytes
(`jpeg_markers`, `check_jpeg_metadata_free`). The evaluator writes packages with it
(`evaluator/outputs/jury_export.py`), the jury app reads them with it.

Format (version 1). Every path is relative to the package folder and must stay inside it.

    jury/
      manifest.json   public: no run name in a candidate's id or file name, nothing derived from one
      key.json        organizer only: which run made each candidate (never read by the juror page)
      images/<candidate id>.jpg   the JPEG-90 files that were scored, named by candidate id
      originals/<image id>.png    optional: only written when task.show_original is true (any image file is read)
      votes.sqlite    created by pp-jury (the vote store)
      votes.store.json  written by pp-jury when the votes live in another store (`--store URL`, PostgreSQL):
                      {"store": "<the URL, password redacted>"}; like votes.sqlite, it keeps the folder from
                      being retired by pp-evaluate (`evaluator.outputs.results_io`)
      ranking.csv     written by `pp-jury rank` (columns `RANKING_COLUMNS`)

manifest.json:

    {"version": 1,
     "task": {"most": 3, "least": 2, "show_original": false},
     "images": [
        {"image": "<image id>",
         "original": null | "originals/<image id>.png",
         "candidates": [{"id": "<opaque random id>", "file": "images/<id>.jpg"}, ...]},
        ...]}

- `image` ids are unique, 1..200 characters without '/', '\\' or control characters (the original's stem).
- an optional top-level "note" (a string, e.g. why the picks were shrunk) is shown to the organizer.
- candidate `id`s are unique across the whole manifest, 8..64 characters of [A-Za-z0-9_-], drawn at random
  (e.g. `secrets.token_hex(8)`); they must not be derived from the run name (no hash of it either).
- `file` is a relative path inside the package; `original` is null or a relative path inside the package,
  and must be non-null for every image when `task.show_original` is true.
- images keep the order in which jurors see them; candidates are re-shuffled per juror by the app.
- "task" is a `PickRule`: a juror picks exactly `most` most and `least` least appealing candidates of an image
  (`PickRule.for_candidates` lowers them for an image with fewer than most + least candidates).

key.json:

    {"candidates": {"<candidate id>": {"run": "<run id>", "image": "<image id>"}, ...},
     "checks": {"<candidate id>": {"image": "<image id>", "kind": "degraded"}, ...}}     (only with checks)

- the candidates and the checks together are exactly the manifest's candidate ids; `image` equals the image the
  candidate is listed under; at most one candidate per (run, image).

Attention checks (`task.attention_every` = N > 0; absent or 0: none, the default): every N-th image (the N-th,
2N-th, ... in the jurors' order) gets one planted candidate more, `attention_check_jpeg` of its original: the
photo shrunk 8 times and blown up again with nearest-neighbour pixels, then JPEG quality 10, a version an
attentive juror never picks as most appealing. It is listed like any candidate (a random id, `images/<id>.jpg`,
JPEG with a JFIF header only, the original's dimensions, so the juror receives the same kind of bytes of the
same length: `served_image.blind_screen`); only key.json's "checks" tells it apart. A juror fails a check by
picking it as most appealing; checks never count in the ranking (`jury_app.ranking.attention`).

`load_package(dir)` and `load_key(dir, package)` check all of this and raise `PackageError` naming the file,
the entry, what is wrong and what to do.

Blinding: `juror_facing_values(manifest)` lists the manifest values that tell the candidates of one image
apart (candidate ids and file names); `blinding_problems(manifest, runs)` finds a run name in one of them.
The writer (`evaluator/outputs/jury_export.py`) and the server (`check_blinding`, `check_servable`, run by
`pp-jury serve`) call these same functions, so `pp-evaluate` cannot write a package that `pp-jury serve`
refuses. A run name that merely occurs in the manifest's keys, fixed path parts (`images/`, `.jpg`) or image
ids (shared by every candidate of an image) tells runs apart in no way, and is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evaluator.common.atomic import write_bytes_atomic
from evaluator.common.errors import JuryPackageError

MANIFEST_NAME = "manifest.json"
KEY_NAME = "key.json"
IMAGES_DIR = "images"
ORIGINALS_DIR = "originals"
STORE_NAME = "votes.sqlite"
EXTERNAL_STORE_NAME = "votes.store.json"  # marks a jury folder whose votes live in another store (see above)
RANKING_NAME = "ranking.csv"
#: `interval` names the interval that produced ci_low / ci_high: "jurors" or "jurors+images"
#: (`jury_app.ranking.intervals`).
RANKING_COLUMNS = ("run", "most", "least", "appearances", "bws", "ci_low", "ci_high", "rank", "interval")
#: Every `pp-jury serve` of a jury folder holds a shared flock on this file for the server's lifetime;
#: pp-evaluate never retires a jury whose lock it cannot take (`evaluator.outputs.results_io`).
SERVE_LOCK = ".serve.lock"
FORMAT_VERSION = 1

IMAGE_ID_RE = re.compile(r"^(?!\.{1,2}$)[^/\\\x00-\x1f]{1,200}$")
CANDIDATE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MIN_RUN_NAME_SEARCH = 3  # shorter run names ("a", "01") occur by chance in random ids: not searched for
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PackageError(JuryPackageError, ValueError):
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
class PickRule:
    """What a juror is asked for each image: exactly `most` most appealing and `least` least appealing candidates
    (never one in both), with the original shown beside them when `show_original`. The task rules' [jury] section
    (`evaluator.config.TaskConfig.jury`) and manifest.json's "task" object are one `PickRule`."""

    most: int = 3
    least: int = 2
    show_original: bool = False
    attention_every: int = 0  # a planted attention check every N images (0: none; see the module docstring)

    def for_candidates(self, n: int) -> PickRule:
        """The rule for `n` candidates: the larger of (most, least) lowered by one (least on a tie) until
        most + least <= max(n, 1), most >= 1. For (3, 2): 5 candidates keep 3/2; 4 give 2/2; 3 give 2/1;
        2 give 1/1; 1 gives 1/0."""
        m, l = self.most, self.least
        while m + l > max(n, 1) and (m > 1 or l > 0):
            if l >= m and l > 0:
                l -= 1
            else:
                m -= 1
        return dataclasses.replace(self, most=m, least=l)

    def shrink_note(self, n: int) -> str | None:
        """The note manifest.json, task.json and the report carry when `n` candidates shrink the picks, else None."""
        got = self.for_candidates(n)
        if (got.most, got.least) == (self.most, self.least):
            return None
        return (f"Only {n} candidates per image: picks shrunk from {self.most} most / {self.least} least to "
                f"{got.most} most / {got.least} least (most + least <= candidates)")

    def explain(self, asked: PickRule | None = None) -> str:
        """The instruction a juror reads; `asked`: the task's rule this one was shrunk from (`for_candidates`)."""
        base = f"Pick exactly {self.most} most appealing" + (
            f" and exactly {self.least} least appealing" if self.least else "") + " (no image in both)."
        if asked is not None and (asked.most, asked.least) != (self.most, self.least):
            base += " This image has only a few versions, so fewer picks than usual are asked."
        return base


@dataclass(frozen=True)
class JuryPackage:
    root: Path
    task: PickRule
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
    """Organizer-only mapping candidate id -> (run, image); `checks`: planted attention check id -> image."""

    candidates: dict[str, CandidateKey]
    checks: dict[str, str] = dataclasses.field(default_factory=dict)

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


def _task(raw: Any, where: str) -> PickRule:
    if not isinstance(raw, dict):
        raise PackageError(f"{where}: 'task' must be an object {{most, least, show_original}}.")
    unknown = set(raw) - {"most", "least", "show_original", "attention_every"}
    if unknown:
        raise PackageError(f"{where}: unknown keys in 'task': {sorted(unknown)}; allowed: most, least, "
                           "show_original, attention_every.")
    most, least, show = raw.get("most", 3), raw.get("least", 2), raw.get("show_original", False)
    every = raw.get("attention_every", 0)
    for name, value, low in (("most", most, 1), ("least", least, 0), ("attention_every", every, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise PackageError(f"{where}: task.{name} = {value!r}; it must be an integer >= {low}.")
    if not isinstance(show, bool):
        raise PackageError(f"{where}: task.show_original = {show!r}; it must be true or false.")
    return PickRule(most=most, least=least, show_original=show, attention_every=every)


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
                               "add 'original': 'originals/<id>.png' or set show_original to false.")
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
    checks_raw = raw.get("checks", {})
    if not isinstance(checks_raw, dict) or set(checks_raw) & set(got):
        raise PackageError(f"{kpath}: 'checks' must be an object {{id: {{image, kind}}}} of ids that are not in "
                           "'candidates'; regenerate the package with `pp-evaluate`.")
    checks: dict[str, str] = {}
    for cid, entry in sorted(checks_raw.items()):
        if not isinstance(entry, dict) or entry.get("kind") != "degraded" or expected.get(cid) != entry.get("image"):
            raise PackageError(f"{kpath}: checks[{cid!r}] must be {{\"image\": <the image it is listed under in "
                               f"{MANIFEST_NAME}>, \"kind\": \"degraded\"}}; regenerate the package.")
        checks[cid] = entry["image"]
    missing = sorted(set(expected) - set(got) - set(checks))
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
    return JuryKey(candidates=out, checks=checks)


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


# -- the writer's side ------------------------------------------------------------------------------------------
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}  # SOI, EOI, TEM, RST0..7: no length field


def jpeg_markers(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, segment payload) of every JPEG header segment before the first SOS; PackageError if not a JPEG."""
    if not data.startswith(b"\xff\xd8"):
        raise PackageError("not a JPEG stream (no SOI marker)")
    out: list[tuple[int, bytes]] = []
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise PackageError(f"corrupt JPEG header: expected a marker at byte {i}")
        while i < len(data) and data[i] == 0xFF:
            i += 1
        if i >= len(data):
            break
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            out.append((marker, b""))
            continue
        length = int.from_bytes(data[i:i + 2], "big")
        out.append((marker, data[i + 2:i + length]))
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
        i += length
    return out


def check_jpeg_metadata_free(data: bytes, what: str) -> None:
    """PackageError unless the JPEG's only application segment is the JFIF APP0 and it has no comment (COM): the
    rule for every image of `images/` (libjpeg writes JFIF APP0 only; EXIF/XMP/ICC could tell jurors something)."""
    for marker, payload in jpeg_markers(data):
        if marker == 0xFE:
            raise PackageError(f"{what}: the JPEG has a comment (COM) segment; jurors could read it")
        if 0xE0 <= marker <= 0xEF and not (marker == 0xE0 and payload.startswith(b"JFIF\x00")):
            raise PackageError(f"{what}: the JPEG has an APP{marker - 0xE0} segment (EXIF/XMP/ICC/...) "
                               "that jurors could read")


def candidate_file(candidate_id: str) -> str:
    """The manifest's `file` of a candidate: `images/<id>.jpg`."""
    return f"{IMAGES_DIR}/{candidate_id}.jpg"


def original_file(image: str) -> str:
    """The manifest's `original` of an image, when shown: `originals/<image>.png`."""
    return f"{ORIGINALS_DIR}/{image}.png"


def make_folders(directory: str | Path, show_original: bool) -> None:
    """Create `DIR/images/` (and `DIR/originals/` when the originals are shown) for a new package."""
    root = Path(directory)
    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    if show_original:
        (root / ORIGINALS_DIR).mkdir(exist_ok=True)


def write_candidate(directory: str | Path, candidate_id: str, jpeg: bytes) -> Path:
    """Write a candidate's JPEG bytes to `DIR/images/<id>.jpg` (atomically); return the path."""
    path = Path(directory) / candidate_file(candidate_id)
    write_bytes_atomic(path, jpeg)
    return path


def original_path(directory: str | Path, image: str) -> Path:
    """Where the original of `image` is written when shown: `DIR/originals/<image>.png` (a PNG)."""
    return Path(directory) / original_file(image)


def build_manifest(task: PickRule, images: Sequence[tuple[str, Sequence[str]]],
                   note: str | None = None) -> dict[str, object]:
    """The manifest.json object (format above) of `images`: (image id, its candidate ids in listing order), in
    the order jurors see them. Candidate files are `candidate_file(id)`; each image's `original` is
    `original_file(image)` when `task.show_original`, else null; "note" only when given."""
    rule = dataclasses.asdict(task)
    if not rule["attention_every"]:
        del rule["attention_every"]  # no checks: the manifest reads as before they existed
    manifest: dict[str, object] = {
        "version": FORMAT_VERSION,
        "task": rule,
        "images": [{"image": image,
                    "original": original_file(image) if task.show_original else None,
                    "candidates": [{"id": cid, "file": candidate_file(cid)} for cid in cids]}
                   for image, cids in images],
    }
    if note:
        manifest["note"] = note
    return manifest


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_manifest(directory: str | Path, manifest: Mapping[str, object]) -> None:
    """Write `DIR/manifest.json` (the format above, e.g. from `build_manifest`), atomically."""
    _write_json(Path(directory) / MANIFEST_NAME, manifest)


def write_key(directory: str | Path, key: Mapping[str, Mapping[str, str]],
              checks: Mapping[str, str] | None = None) -> None:
    """Write `DIR/key.json` from {candidate id: {"run", "image"}} and the planted checks {id: image}, ids sorted,
    atomically ("checks" only when there are some)."""
    data: dict[str, object] = {"candidates": {cid: dict(key[cid]) for cid in sorted(key)}}
    if checks:
        data["checks"] = {cid: {"image": checks[cid], "kind": "degraded"} for cid in sorted(checks)}
    _write_json(Path(directory) / KEY_NAME, data)


CHECK_SHRINK = 8  # attention check: shrink factor before blowing the photo up again
CHECK_QUALITY = 10  # and its JPEG quality


def attention_check_jpeg(rgb: Any) -> bytes:
    """The planted attention check of an image (see the module docstring): the original's HxWx3 uint8 pixels,
    box-shrunk by CHECK_SHRINK (at least 1 pixel), nearest-neighbour back to WxH, JPEG quality CHECK_QUALITY
    (Pillow, JFIF header only: no metadata)."""
    import io

    import numpy as np
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    small = im.resize((max(1, im.width // CHECK_SHRINK), max(1, im.height // CHECK_SHRINK)), Image.Resampling.BOX)
    buf = io.BytesIO()
    small.resize(im.size, Image.Resampling.NEAREST).save(buf, format="JPEG", quality=CHECK_QUALITY)
    return buf.getvalue()
