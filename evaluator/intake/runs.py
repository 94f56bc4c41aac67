"""Finding and validating submitted runs (docs/design.md, "The run folder and run.json"); nothing is ever written.

A run is `runs/<run_id>/` or `runs/<run_id>.zip` holding, for every original `<id>.png`, exactly one
`<id>.png` or `<id>.jpg` of the original's width and height (8-bit RGB, the `evaluator.common.imageio` policy), and
`run.json` (see `evaluator.contracts.run_folder`). `validate_run` names every problem as a `RunIssue` (file, what is wrong,
what to do) and never raises for a bad submission; a valid run's `images` map every image id to an `ImageRef`.

Decisions:
- `find_runs` returns folders, `*.zip` files (any case) and symbolic links (so a linked run gets an `invalid`
  row saying why), sorted by name. Names starting with '.' and OS clutter (`__MACOSX`, `Thumbs.db`,
  `desktop.ini`) are skipped; other plain files are skipped with a logged warning.
- Inside a run, OS clutter is ignored and never read: `.DS_Store`, AppleDouble `._*` files, `Thumbs.db`,
  `desktop.ini`, the `__MACOSX/` folder. Any other hidden file is an error. Symbolic links are errors wherever
  they are (checked with `lstat`, never followed), even when named like clutter.
- Extensions are exactly `.png` and `.jpg` (lowercase, as in the contract); `.jpeg` or upper case get a
  "rename it" message. The content must match the extension.
- A zip holds the run's files either at its root or inside one top-level folder named like the zip
  (`team-run1.zip` -> `team-run1/`). A single folder with another name is reported (and its files are still
  checked, so all problems come out at once). Zips are read in memory under `Limits`; never extracted.
- The run id is the folder name or the zip's stem. When both `X/` and `X.zip` exist, both are invalid.
- Decoding: with `decode=True` (default) every image is fully decoded once, so a valid run is known to load.
  `evaluator.common.imageio` reads from paths only, so zip members are decoded through a temporary copy in a private
  temporary directory (deleted at once), never next to the run.
- `ImageRef.load()` re-reads the file, checks its sha256 against the validated content (`RunReadError` when it
  changed) and decodes it; image errors raise `evaluator.common.imageio.ImageError`. The refs of one zip share one
  lazily opened handle; refs pickle (a copy reopens the file).
- Issue names: files relative to the run; for zips, problems of the archive itself (unsafe names, links,
  duplicates, sizes) name the member as stored in the archive. A file refused for its own reason (a link, a
  wrong extension, an unsafe zip member) is not also reported as a missing image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
import threading
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.common.errors import IntakeError, OriginalsError
from evaluator.common.imageio import ImageError, ImageHeader, load_rgb, probe_image
from evaluator.contracts.run_folder import RUN_JSON, REQUIRED_KEYS, Limits, RunIssue, check_run_json
from evaluator.common.text import describe_chars, invisible_chars, show_name
from evaluator.intake.safe_zip import ZipReadError, open_checked, read_member

__all__ = [
    "Limits", "RunIssue", "ValidatedRun", "ImageRef", "RunsDirError", "RunReadError",
    "find_runs", "index_originals", "validate_run", "run_id",
]

log = logging.getLogger(__name__)

_JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_JUNK_DIRS = {"__MACOSX"}
_FIX_LAYOUT = "a run holds only <id>.png or <id>.jpg for each original, and run.json, side by side"


class RunsDirError(IntakeError, ValueError):
    """The runs folder does not exist or cannot be listed."""


class RunReadError(IntakeError, ValueError):
    """A validated image could not be read again (changed, removed, replaced by a link)."""


class _TotalExceeded(Exception):
    """The bytes read from one run passed `Limits.max_total_bytes` (stops that run's validation)."""


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base in _JUNK_FILES or base.startswith("._") or name.split("/", 1)[0] in _JUNK_DIRS


def run_id(path: Path) -> str:
    """The run's id: folder name, or the stem of `<id>.zip`; undecodable bytes shown as `\\xNN` escapes."""
    name = path.name
    if path.suffix.lower() == ".zip" and not path.is_dir():
        name = name[: -len(".zip")]
    return os.fsencode(name).decode("utf-8", "backslashreplace")


# --- image references -------------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_regular(path: Path, cap: int) -> bytes:
    """Read a regular file without following a final symlink, at most `cap` bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunReadError(f"{path}: is not a regular file; put the image file itself in the run")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise RunReadError(f"{path}: is larger than {cap} bytes; submit images of the original's size")
    return data


def _split_image_error(exc: ImageError) -> tuple[str, str]:
    """(problem, fix) of an imageio error, whose message is '<path>: <problem>; <fix>'."""
    problem, fix = getattr(exc, "problem", None), getattr(exc, "fix", None)
    if isinstance(problem, str) and isinstance(fix, str):
        return problem, fix
    text = str(exc)
    prefix = f"{exc.path}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    problem, _, fix = text.rpartition("; ")
    return (problem, fix) if problem else (text, "re-export the image as 8-bit RGB PNG")


def _decode_bytes(data: bytes, filename: str, shown_as: str, max_pixels: int,
                  decode: bool) -> tuple[ImageHeader, np.ndarray | None]:
    """Probe (and decode) image bytes with the imageio policy via a private temporary copy named `filename`.

    imageio reads paths only; errors are re-raised with `shown_as` as their path (the temp path never leaks).
    """
    with tempfile.TemporaryDirectory(prefix="pp-run-member-") as tmp:
        p = Path(tmp) / filename
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            header = probe_image(p, max_pixels=max_pixels)
            rgb = load_rgb(p, max_pixels=max_pixels) if decode else None
        except ImageError as exc:
            problem, fix = _split_image_error(exc)
            try:
                renamed = type(exc)(shown_as, problem, fix)
            except TypeError:
                renamed = ImageError(shown_as, problem, fix)
            raise renamed from None
    return header, rgb


class _ZipHandle:
    """One validated zip, opened lazily once and shared by its ImageRefs (re-parsing the directory per image
    would cost more than decoding it). Picklable: a copy reopens the file on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fp: Any = None
        self._zf: zipfile.ZipFile | None = None

    def read(self, member: str, cap: int) -> bytes:
        with self._lock:
            if self._zf is None:
                self._fp = open(self.path, "rb")
                try:
                    self._zf = zipfile.ZipFile(self._fp)
                except BaseException:
                    self._fp.close()
                    raise
            return read_member(self._zf, member, cap)

    def close(self) -> None:
        with self._lock:
            if self._zf is not None:
                self._zf.close()
                self._fp.close()
            self._zf = self._fp = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class ImageRef:
    """A validated image of a run: `.name` (file or member name), `.sha256` (of its bytes), `.header`, `.load()`.

    Opaque: the pipeline uses only these. `load()` returns (H, W, 3) uint8 RGB.
    """

    __slots__ = ("name", "sha256", "header", "_path", "_member", "_limits", "_zip")

    def __init__(self, name: str, sha256: str, header: ImageHeader, path: Path, member: str | None,
                 limits: Limits, zip_handle: _ZipHandle | None = None) -> None:
        self.name, self.sha256, self.header = name, sha256, header
        self._path, self._member, self._limits = path, member, limits
        self._zip = zip_handle if member is None or zip_handle is not None else _ZipHandle(path)

    def __repr__(self) -> str:
        where = f"{self._path}!{self._member}" if self._member else str(self._path)
        return f"ImageRef({self.name!r}, {where!r}, sha256={self.sha256[:12]}...)"

    def read_bytes(self) -> bytes:
        """The file's bytes, checked against the validated sha256."""
        cap = self._limits.max_file_bytes
        try:
            if self._member is None:
                data = _read_regular(self._path, cap)
            else:
                data = self._zip.read(self._member, cap)
        except (OSError, ZipReadError, zipfile.BadZipFile) as exc:
            raise RunReadError(f"{self!r}: cannot be read again ({exc}); validate the run again") from exc
        if _sha256(data) != self.sha256:
            raise RunReadError(f"{self!r}: changed since it was validated; validate the run again")
        return data

    def load(self) -> np.ndarray:
        """Decode under the imageio policy; ImageError for a bad image, RunReadError when the file changed."""
        data = self.read_bytes()
        if self._member is None:
            return load_rgb(self._path, max_pixels=self._limits.max_pixels)
        shown = f"{self._path}!{self._member}"
        _, rgb = _decode_bytes(data, self.name, shown, self._limits.max_pixels, decode=True)
        assert rgb is not None
        return rgb


@dataclass
class ValidatedRun:
    name: str
    source: Path
    issues: list[RunIssue] = field(default_factory=list)
    meta: dict[str, Any] | None = None
    images: dict[str, ImageRef] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.issues


# --- finding runs and originals ---------------------------------------------------------------------------

def find_runs(runs_dir: Path) -> list[Path]:
    """Run candidates in `runs_dir`: folders, `.zip` files and symlinks (reported invalid later), sorted by name."""
    runs_dir = Path(runs_dir)
    try:
        names = os.listdir(runs_dir)
    except FileNotFoundError:
        raise RunsDirError(f"{runs_dir}: runs folder not found; pass --runs a folder holding one folder or .zip per run") from None
    except NotADirectoryError:
        raise RunsDirError(f"{runs_dir}: is not a folder; pass --runs a folder holding one folder or .zip per run") from None
    except OSError as exc:
        raise RunsDirError(f"{runs_dir}: cannot be listed ({exc}); check its permissions") from exc
    found = []
    for name in sorted(names):
        path = runs_dir / name
        if name.startswith(".") or name in _JUNK_DIRS or name in _JUNK_FILES:
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode) or (
            stat.S_ISREG(st.st_mode) and name.lower().endswith(".zip")
        ):
            found.append(path)
        else:
            log.warning("%s: not a run (runs are folders or .zip files); skipped", show_name(str(path)))
    return found


def index_originals(originals_dir: Path, limits: Limits = Limits()) -> dict[str, ImageHeader]:
    """Headers of the originals `<id>.png` in `originals_dir`, by id (sorted); OriginalsError when unusable."""
    originals_dir = Path(originals_dir)
    fix = "pass --originals the folder of original <id>.png images"
    if not originals_dir.is_dir():
        what = "not found" if not originals_dir.exists() else "is not a folder"
        raise OriginalsError(f"{originals_dir}: originals folder {what}; {fix}")
    try:
        names = sorted(os.listdir(originals_dir))
    except OSError as exc:
        raise OriginalsError(f"{originals_dir}: cannot be listed ({exc}); check its permissions") from exc
    headers: dict[str, ImageHeader] = {}
    problems: list[str] = []
    for name in names:
        path = originals_dir / name
        if name.startswith(".") or _is_junk(name) or not name.endswith(".png") or path.is_dir():
            if not name.startswith(".") and not path.is_dir():
                log.warning("%s: not an original (originals are <id>.png); ignored", show_name(str(path)))
            continue
        stem = name[: -len(".png")]
        if show_name(stem) != stem or not stem:
            problems.append(f"{show_name(name)}: the image id must be printable UTF-8")
            continue
        try:
            header = probe_image(path, max_pixels=limits.max_pixels)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot be read ({exc})")
            continue
        if header.format != "PNG" or header.mode != "RGB" or header.bit_depth != 8:
            problems.append(f"{path}: is {header.format} {header.mode} {header.bit_depth}-bit, not 8-bit RGB PNG")
            continue
        headers[stem] = header
    if problems:
        raise OriginalsError(f"{originals_dir}: {len(problems)} original(s) cannot be used: "
                             + " | ".join(problems) + "; fix or remove them")
    if not headers:
        raise OriginalsError(f"{originals_dir}: holds no <id>.png originals; {fix}")
    return headers


# --- listing a run ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    """One thing in a run: `name` relative to the run root ('/'-separated), kind 'file'|'dir'|'link'|'other'."""

    name: str
    kind: str
    size: int


def _list_folder(root: Path, limits: Limits, issues: list[RunIssue]) -> list[_Entry] | None:
    """The run folder's top-level entries (never following links); None when it cannot be listed or is too big."""
    entries: list[_Entry] = []
    try:
        it = os.scandir(os.fsencode(root))
    except OSError as exc:
        issues.append(RunIssue(show_name(root.name), f"cannot be listed ({exc})", "check the folder's permissions"))
        return None
    with it:
        for n, e in enumerate(it):
            if n >= limits.max_members:
                issues.append(RunIssue(show_name(root.name), f"holds more than {limits.max_members} entries",
                                       "submit only the run's images and run.json"))
                return None
            try:
                name = e.name.decode("utf-8")
            except UnicodeDecodeError:
                issues.append(RunIssue(repr(e.name), "file name is not valid UTF-8",
                                       "rename it to <id>.png or <id>.jpg, the id of its original"))
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as exc:
                issues.append(RunIssue(show_name(name), f"cannot be examined ({exc})", "check its permissions"))
                continue
            kind = ("link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
                    else "file" if stat.S_ISREG(st.st_mode) else "other")
            entries.append(_Entry(name, kind, st.st_size))
    return sorted(entries, key=lambda x: x.name)


def _zip_layout(entries: list[_Entry], run: str, zip_name: str, issues: list[RunIssue]) -> str:
    """The prefix to strip: '' for files at the root, '<folder>/' when everything sits in one folder."""
    tops = {e.name.split("/", 1)[0] for e in entries if not _is_junk(e.name)}
    nested = all("/" in e.name or e.kind == "dir" for e in entries if not _is_junk(e.name))
    if len(tops) != 1 or not nested:
        return ""
    top = next(iter(tops))
    if top != run:
        issues.append(RunIssue(f"{show_name(top)}/", f"is the zip's only folder but the zip is named '{zip_name}'",
                               f"name the folder '{run}/' or the zip '{top}.zip' (or zip the files without a folder)"))
    return top + "/"


# --- validation -------------------------------------------------------------------------------------------

@dataclass
class _Checker:
    """Validation state for one run; `read(entry)` returns the entry's bytes (folder file or zip member)."""

    run: ValidatedRun
    originals: dict[str, ImageHeader]
    limits: Limits
    decode: bool
    zf: zipfile.ZipFile | None = None
    prefix: str = ""
    zip_handle: _ZipHandle | None = None
    bytes_read: int = 0
    #: image ids whose file was found but refused with its own message (so it is not also called "missing")
    claimed: set[str] = field(default_factory=set)

    def claim(self, name: str) -> None:
        """Remember the image id a refused file stands for (`x/a.PNG` -> `a`)."""
        base = name.rstrip("/").rsplit("/", 1)[-1]
        stem = base.rpartition(".")[0]
        if stem in self.originals:
            self.claimed.add(stem)

    def issue(self, file: str, problem: str, fix: str) -> None:
        self.run.issues.append(RunIssue(file, problem, fix))

    def read(self, entry: _Entry) -> bytes:
        cap = self.limits.max_file_bytes
        if self.zf is None:
            data = _read_regular(self.run.source / entry.name, cap)
        else:
            data = read_member(self.zf, self.prefix + entry.name, cap)
        self.bytes_read += len(data)
        if self.bytes_read > self.limits.max_total_bytes:
            raise _TotalExceeded(f"holds more than {self.limits.max_total_bytes} bytes")
        return data

    def check_entries(self, entries: list[_Entry]) -> None:
        """Sort entries into run.json and images, reporting everything else."""
        total = sum(e.size for e in entries if e.kind == "file" and not _is_junk(e.name))
        if total > self.limits.max_total_bytes:
            self.issue(show_name(self.run.source.name),
                       f"holds {total} bytes, over the limit of {self.limits.max_total_bytes}",
                       "submit only the run's images and run.json")
            return
        images: dict[str, list[_Entry]] = defaultdict(list)
        run_json: _Entry | None = None
        subfolders: set[str] = set()
        for e in entries:
            shown = show_name(e.name)
            if e.kind == "link":
                self.claim(e.name)
                self.issue(shown, "is a symbolic link (links are never followed)",
                           "put the file itself in the run, not a link")
                continue
            if _is_junk(e.name):
                continue
            if "/" in e.name or e.kind == "dir":
                subfolders.add(e.name.split("/", 1)[0])
                continue
            if e.name.startswith("."):
                self.issue(shown, "is a hidden file", f"remove it; {_FIX_LAYOUT}")
                continue
            if e.kind != "file":
                self.issue(shown, "is not a regular file", f"remove it; {_FIX_LAYOUT}")
                continue
            if e.name == RUN_JSON:
                run_json = e
                continue
            stem, dot, ext = e.name.rpartition(".")
            if not dot or not stem:
                self.issue(shown, "is not an image or run.json", f"remove it; {_FIX_LAYOUT}")
            elif ext in ("png", "jpg"):
                if stem in self.originals:
                    images[stem].append(e)
                else:
                    self.issue(shown, f"has no original (no '{show_name(stem)}.png' among the "
                               f"{len(self.originals)} originals)", "remove it, or name it after its original's id")
            elif ext.lower() in ("png", "jpg", "jpeg"):
                self.claim(e.name)
                want = ".png" if ext.lower() == "png" else ".jpg"
                self.issue(shown, f"has the extension '.{ext}'", f"rename it to '{show_name(stem)}{want}'")
            else:
                self.issue(shown, f"has the unsupported type '.{show_name(ext)}'",
                           "submit <id>.png (lossless, recommended) or <id>.jpg")
        for top in sorted(subfolders):
            self.issue(f"{show_name(top)}/", "is a subfolder; runs are flat (nothing inside it is read)",
                       f"move the images to the top level of the run; {_FIX_LAYOUT}")
        self.check_run_json(run_json)
        self.check_images(images)

    def check_run_json(self, entry: _Entry | None) -> None:
        if entry is None:
            self.issue(RUN_JSON, "is missing", f"add run.json with the keys {', '.join(REQUIRED_KEYS)}")
            return
        if entry.size > self.limits.max_run_json_bytes:
            self.issue(RUN_JSON, f"is {entry.size} bytes, over the limit of {self.limits.max_run_json_bytes}",
                       "keep run.json to the run's description and settings")
            return
        try:
            data = self.read(entry)
        except (OSError, ZipReadError, RunReadError) as exc:
            self.issue(RUN_JSON, f"cannot be read ({exc})", "write it again (as UTF-8 JSON)")
            return
        meta, issues = check_run_json(data)
        self.run.meta = meta
        self.run.issues.extend(issues)

    def check_images(self, images: dict[str, list[_Entry]]) -> None:
        if not images and not self.claimed:
            self.issue(show_name(self.run.source.name), "holds no images",
                       f"add <id>.png or <id>.jpg for each of the {len(self.originals)} originals")
            return
        for stem in sorted(images):
            found = images[stem]
            if len(found) > 1:
                self.issue(" and ".join(show_name(e.name) for e in found), f"are two files for the image '{stem}'",
                           "keep exactly one of them")
                continue
            self.check_image(stem, found[0])
        missing = [s for s in self.originals if s not in images and s not in self.claimed]
        for stem in missing:
            self.issue(f"{stem}.png", f"is missing (no {stem}.png or {stem}.jpg)",
                       "add it, the same size as its original")

    def check_image(self, stem: str, e: _Entry) -> None:
        shown = show_name(e.name)
        if e.size > self.limits.max_file_bytes:
            self.issue(shown, f"is {e.size} bytes, over the limit of {self.limits.max_file_bytes}",
                       "submit images of the original's size")
            return
        try:
            data = self.read(e)
            if self.zf is None:
                path = self.run.source / e.name
                header = probe_image(path, max_pixels=self.limits.max_pixels)
                want = self.originals[stem]
                if (header.width, header.height) == (want.width, want.height) and self.decode:
                    load_rgb(path, max_pixels=self.limits.max_pixels)
            else:
                shown_as = f"{self.run.source}!{self.prefix}{e.name}"
                header, _ = _decode_bytes(data, e.name, shown_as, self.limits.max_pixels, self.decode)
        except ImageError as exc:
            problem, fix = _split_image_error(exc)
            self.issue(shown, problem, fix)
            return
        except ZipReadError as exc:
            self.issue(shown, str(exc), "re-create the zip from the run folder")
            return
        except (OSError, RunReadError) as exc:
            self.issue(shown, f"cannot be read ({exc})", "write it again")
            return
        want = self.originals[stem]
        if (header.width, header.height) != (want.width, want.height):
            self.issue(shown, f"is {header.width}x{header.height} pixels but its original is "
                       f"{want.width}x{want.height}", "submit it at the original's size (no resizing or cropping)")
            return
        if not self.decode and (header.mode != "RGB" or header.bit_depth != 8):
            self.issue(shown, f"is {header.mode} with {header.bit_depth} bits per sample, not 8-bit RGB",
                       "save it as 8-bit RGB PNG (e.g. `evaluator.common.imageio.save_png`)")
            return
        if self.zf is None:
            ref = ImageRef(e.name, _sha256(data), header, self.run.source / e.name, None, self.limits)
        else:
            ref = ImageRef(e.name, _sha256(data), header, self.run.source, self.prefix + e.name, self.limits,
                           self.zip_handle)
        self.run.images[stem] = ref


def _twin(path: Path, is_zip: bool) -> Path | None:
    """The other form of the same run id next to it (`X/` for `X.zip`, `X.zip` for `X/`), if present."""
    parent, name = path.parent, path.name
    candidates = [parent / name[: -len(".zip")]] if is_zip else [parent / (name + ".zip"), parent / (name + ".ZIP")]
    for c in candidates:
        try:
            os.lstat(c)
        except OSError:
            continue
        if c != path:
            return c
    return None


def validate_run(path: Path, originals: dict[str, ImageHeader], limits: Limits = Limits(), *,
                 decode: bool = True, name: str | None = None) -> ValidatedRun:
    """Check one run folder or zip against the originals; every problem becomes a `RunIssue`, none raises.

    `decode=False` checks headers only (format, size, mode, bit depth): corrupt pixel data then surfaces as an
    ImageError from `ImageRef.load()`. `name` overrides the run id (e.g. Codabench's fixed `res/` folder); a
    zip's single top folder must then carry that name.
    """
    path = Path(path)
    run = ValidatedRun(name=run_id(path) if name is None else name, source=path)
    label = show_name(path.name)
    chk = _Checker(run, originals, limits, decode)
    try:
        os.fsencode(path.name if name is None else name).decode("utf-8")
    except UnicodeDecodeError:
        chk.issue(label, "the run name is not valid UTF-8", "rename the run with letters, digits, - or _")
    else:
        hidden = invisible_chars(run.name)
        if hidden:  # ifgsm + U+034F would score as its own run and print like ifgsm
            chk.issue(label, f"the run name has invisible characters ({describe_chars(hidden)})",
                      "rename the run with letters, digits, - or _")
        elif not run.name or not run.name.isprintable():
            chk.issue(label, "the run name has control characters", "rename the run with letters, digits, - or _")
    try:
        st = os.lstat(path)
    except OSError as exc:
        chk.issue(label, f"cannot be examined ({exc})", "check the path and its permissions")
        return run
    is_zip = stat.S_ISREG(st.st_mode) and path.suffix.lower() == ".zip"
    if stat.S_ISLNK(st.st_mode):
        chk.issue(label, "is a symbolic link (links are never followed)", "put the run folder or zip itself in the runs folder")
        return run
    if not (stat.S_ISDIR(st.st_mode) or is_zip):
        chk.issue(label, "is neither a folder nor a .zip file", "submit the run as a folder or a .zip of it")
        return run
    twin = _twin(path, is_zip)
    if twin is not None:
        chk.issue(label, f"and '{show_name(twin.name)}' are two submissions of the run '{show_name(run.name)}'",
                  "keep one of them")
    try:
        if is_zip:
            _validate_zip(chk, path, st.st_size)
        else:
            entries = _list_folder(path, limits, run.issues)
            if entries is not None:
                chk.check_entries(entries)
    except _TotalExceeded as exc:
        chk.issue(label, str(exc), "submit only the run's images and run.json")
    if run.issues:
        log.info("run %s: invalid, %d issue(s)", show_name(run.name), len(run.issues))
    return run


def _validate_zip(chk: _Checker, path: Path, size: int) -> None:
    limits, label = chk.limits, show_name(path.name)
    if size > limits.max_total_bytes:
        chk.issue(label, f"is {size} bytes, over the limit of {limits.max_total_bytes}",
                  "submit only the run's images and run.json")
        return
    try:
        fp = open(path, "rb")
    except OSError as exc:
        chk.issue(label, f"cannot be opened ({exc})", "check its permissions")
        return
    with fp:
        zf, members, issues = open_checked(path, fp, limits)
        chk.run.issues.extend(issues)
        for refused in issues:
            chk.claim(refused.file)
        if zf is None:
            return
        with zf:
            entries = [_Entry(m.name.rstrip("/"), "dir" if m.is_dir else "file", m.size) for m in members]
            prefix = _zip_layout(entries, chk.run.name, path.name, chk.run.issues)
            chk.zf, chk.prefix, chk.zip_handle = zf, prefix, _ZipHandle(path)
            # With a prefix, every member that is not OS clutter sits under it (see _zip_layout).
            inside = [_Entry(e.name[len(prefix):], e.kind, e.size) for e in entries
                      if e.name.startswith(prefix) and e.name != prefix.rstrip("/")]
            chk.check_entries(inside)
