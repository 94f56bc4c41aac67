"""Writing the results folder: spreadsheet-safe CSV cells, and results generations switched in one step.

Layout of a results folder `OUT/` (`pp-evaluate --out OUT`):

    OUT/.generations/<id>/   one complete set of results: runs.csv, scores.csv, selection.csv, task.json,
                             report.html, jury/
    OUT/current              symbolic link -> .generations/<id>: THE pointer to the committed generation
    OUT/runs.csv, OUT/report.html, OUT/jury, ...
                             symbolic links -> current/runs.csv, current/report.html, current/jury, ...
                             (fixed: written once, they never change, so the documented paths always work)
    OUT/.cache/, OUT/.lock   the score cache and the writers' lock (outside every generation: they survive)
    OUT/jury-previous-<generation id>/   key.json and manifest.json of a retired generation's jury
    OUT/jury-previous-<UTC time>/        an older-layout OUT/jury folder that held votes, moved aside

Commit (`commit_generation`): everything of one evaluation is written into a fresh `OUT/.generations/<id>/`
(fsynced); then one `os.replace` of a new symbolic link over `OUT/current` switches every user-facing path to the
new generation at once, and the old generation is retired. A kill at any moment leaves `current` pointing at a
complete generation, the old one or the new one, never a mix. Every path in `OUT/` goes through `current`, so a
reader of one file always reads a committed generation; a reader of several files that must come from the same
evaluation resolves `OUT/current` once (`committed_generation`, or `os.path.realpath`) and reads from there.

Retiring a generation deletes it, except a generation whose jury is live: being served by `pp-jury serve` (which
holds a shared flock on `jury/.serve.lock` for its lifetime, `SERVE_LOCK`) or holding votes (`votes.sqlite`, or
the marker `votes.store.json` pp-jury writes when the votes live in another store, e.g. PostgreSQL). That
one stays where it is, untouched (a warning names it): the server keeps the path it started on, so its jurors keep
voting into that package, and `pp-jury rank OUT/.generations/<id>/jury` ranks them; the new results' jury is
another package, with new juror links. A deleted generation's `jury/key.json` and `manifest.json` are kept in
`OUT/jury-previous-<generation id>/` (the images are not), so votes cast on a copy of that package can still be
mapped to runs. `tidy` (run under the lock before every evaluation) finishes
whatever a killed evaluation left: unfinished or replaced generations, temporary links, and the staging folders of
the older one-file-at-a-time layout. A results folder in that older layout (real files in `OUT/`) is adopted:
a hard-linked copy of it becomes the first generation, then each real entry is replaced by its link (a folder is
missing for an instant between the two renames; no path ever shows anything but those old results).

Symbolic links are needed (any POSIX file system); `ResultsFolderError` says so where they cannot be made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from evaluator.common.errors import ResultsError
from evaluator.common.atomic import write_bytes_atomic
from evaluator.contracts.jury_package import KEY_NAME as KEY_FILE
from evaluator.contracts.jury_package import MANIFEST_NAME as MANIFEST_FILE
from evaluator.contracts.jury_package import SERVE_LOCK
from evaluator.contracts.jury_package import EXTERNAL_STORE_NAME
from evaluator.contracts.jury_package import STORE_NAME as VOTES_FILE
from evaluator.contracts.results import JURY_DIR

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; votes.sqlite alone marks a jury in use
    fcntl = None

log = logging.getLogger(__name__)

GENERATIONS = ".generations"
CURRENT = "current"
TMP_LINK_PREFIX = ".link-"
LEGACY_PREFIXES = (".staging-", ".old-")  # left by the older layout's commit
KEPT_PREFIX = "jury-previous-"  # OUT/jury-previous-<generation id>/: key.json + manifest.json of a retired jury
RETIRING_PREFIX = ".retiring-"  # .generations/.retiring-<id>: a generation being deleted


class ResultsFolderError(ResultsError, OSError):
    """The results folder cannot be laid out (the message names the path and what to do)."""


# -- generations ------------------------------------------------------------------------------------------------
def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _link_target(path: Path) -> str | None:
    """The text of the symbolic link `path`, or None when `path` is not a link."""
    try:
        return os.readlink(path)
    except (FileNotFoundError, OSError):
        return None


def _set_link(path: Path, target: str) -> None:
    """Make `path` a symbolic link to `target` in one step (a temporary link renamed over it)."""
    tmp = path.parent / f"{TMP_LINK_PREFIX}{secrets.token_hex(6)}"
    try:
        os.symlink(target, tmp)
    except OSError as exc:
        raise ResultsFolderError(f"{path.parent}: cannot create a symbolic link there ({exc}); the results folder "
                                 "needs a file system with symbolic links, pass another --out") from exc
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` to disk, so a committed generation survives a power cut."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def committed_generation(out_dir: str | os.PathLike) -> Path | None:
    """The folder of the committed results (what `OUT/current` points to), or None before the first commit.

    Read several files of one evaluation from this folder: it never changes once committed."""
    out = Path(out_dir)
    target = _link_target(out / CURRENT)
    if target is None:
        return None
    gen = out / target
    if Path(target).is_absolute() or Path(target).parent != Path(GENERATIONS) or not gen.is_dir():
        return None
    return gen


def new_generation(out_dir: Path) -> Path:
    """A fresh, empty generation folder `OUT/.generations/<UTC time>-<random>/` to write results into."""
    gens = out_dir / GENERATIONS
    gens.mkdir(exist_ok=True)
    gen = gens / f"{_stamp()}-{secrets.token_hex(4)}"
    gen.mkdir()
    return gen


def _keep_votes(jury: Path, out_dir: Path) -> None:
    """Move an older-layout `OUT/jury` folder that holds votes to `OUT/jury-previous-<UTC time>/` (never deleted)."""
    keep = out_dir / f"{KEPT_PREFIX}{_stamp()}"
    n = 1
    while keep.exists():
        n += 1
        keep = out_dir / f"{KEPT_PREFIX}{_stamp()}-{n}"
    log.warning("%s holds jury votes; moving it to %s instead of deleting it", jury, keep)
    os.replace(jury, keep)


@contextlib.contextmanager
def _unserved(jury: Path) -> Iterator[bool]:
    """Take the serve lock of the jury folder `jury` (`SERVE_LOCK`) exclusively, without waiting, for the block:
    yields False when a `pp-jury serve` holds it (the jury is live), True otherwise. Held while the caller retires
    the folder, so a server starting on it meanwhile waits, then finds it gone and stops with a message."""
    if fcntl is None or jury.is_symlink() or not jury.is_dir():
        yield True
        return
    lock = jury / SERVE_LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError:  # not ours to open (permissions): a server may hold it, so the folder stays
        yield not lock.exists()
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # no flock on this file system: votes.sqlite alone marks a jury in use
            pass
        yield True
    finally:
        os.close(fd)


def _holds_votes(jury: Path, current: Path | None) -> bool:
    """`jury/votes.sqlite` exists, and is not the very file of the committed generation's jury (a hard link); or
    `jury/votes.store.json` marks votes kept in another store (PostgreSQL) for this package."""
    if jury.is_symlink():
        return False
    return ((jury / VOTES_FILE).exists() and not (current is not None and _same_votes(jury, current / JURY_DIR))) \
        or (jury / EXTERNAL_STORE_NAME).exists()


def _keep_key(gen: Path, out_dir: Path) -> None:
    """Copy the key.json and manifest.json of generation `gen`'s jury to `OUT/jury-previous-<generation id>/`
    before `gen` is deleted: votes cast on a copy of that package can still be mapped to runs. A package with no
    candidate keeps nothing (it maps nothing)."""
    jury = gen / JURY_DIR
    if jury.is_symlink() or not (jury / KEY_FILE).is_file():
        return
    try:
        key = json.loads((jury / KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        key = None  # unreadable: kept all the same
    if isinstance(key, dict) and key.get("candidates") == {}:
        return
    keep = out_dir / f"{KEPT_PREFIX}{gen.name}"
    try:
        keep.mkdir(exist_ok=True)
        for name in (KEY_FILE, MANIFEST_FILE):
            if (jury / name).is_file():
                write_bytes_atomic(keep / name, (jury / name).read_bytes())
    except OSError as exc:
        raise ResultsFolderError(f"{keep}: cannot keep the key of the jury in {gen} there ({exc}); move that "
                                 "entry out of the results folder and rerun") from exc
    _fsync_dir(keep)
    _fsync_dir(out_dir)


def _retire_generations(out_dir: Path) -> list[tuple[Path, str]]:
    """Delete every generation but the committed one, except one whose jury is live; return the kept ones.

    A generation whose jury is being served (`_unserved`) or holds votes (`votes.sqlite`) stays where it is,
    untouched: a running `pp-jury serve` holds that folder's path, so it keeps working and its votes stay with
    its package. Any other generation is deleted, after its jury's key.json and manifest.json are copied to
    `OUT/jury-previous-<generation id>/` (`_keep_key`); it is first renamed to `.generations/.retiring-<id>`
    so that a server starting on its old path finds it gone. Returns (generation, why) for each kept one."""
    gens = out_dir / GENERATIONS
    kept: list[tuple[Path, str]] = []
    if not gens.is_dir():
        return kept
    current = committed_generation(out_dir)
    for gen in sorted(gens.iterdir()):
        if current is not None and gen.name == current.name:
            continue
        if gen.is_symlink() or not gen.is_dir():
            gen.unlink(missing_ok=True)
            continue
        if gen.name.startswith(RETIRING_PREFIX):  # checked and its key kept before the rename
            shutil.rmtree(gen, ignore_errors=True)
            continue
        jury = gen / JURY_DIR
        with _unserved(jury) as free:
            if not free:
                kept.append((gen, "is being served by `pp-jury serve`"))
                continue
            if _holds_votes(jury, current):
                marker = (jury / EXTERNAL_STORE_NAME).exists() and not (jury / VOTES_FILE).exists()
                kept.append((gen, f"holds votes ({EXTERNAL_STORE_NAME if marker else VOTES_FILE})"))
                continue
            _keep_key(gen, out_dir)
            retiring = gens / f"{RETIRING_PREFIX}{gen.name}"
            os.replace(gen, retiring)
        shutil.rmtree(retiring, ignore_errors=True)
    return kept


def _report_kept(kept: Sequence[tuple[Path, str]], out_dir: Path, level: int) -> None:
    for gen, why in kept:
        log.log(level, "%s was kept, not deleted: its jury %s. A running jury keeps its own generation: jurors "
                "go on voting there, and `pp-jury rank %s` ranks those votes. The new results' jury %s is another "
                "package: serve it with new juror links (`pp-jury jurors %s --add N`). Delete %s yourself once "
                "its votes are no longer needed.", gen, why, gen / JURY_DIR, out_dir / JURY_DIR, out_dir / JURY_DIR, gen)


def _copy_as_links(src: Path, dst: Path) -> None:
    """A copy of the file or folder `src` at `dst` made of hard links (the same bytes, nothing rewritten)."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # a file system without hard links
            shutil.copy2(a, b)

    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    else:
        link(str(src), str(dst))


def _same_votes(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a / VOTES_FILE, b / VOTES_FILE)
    except OSError:
        return False


def _replace_entry(path: Path, out_dir: Path) -> None:
    """Replace the real file or folder `OUT/<name>` by the link `current/<name>`. The committed generation gets a
    copy first if it lacks that entry; a jury/ folder whose votes are not that copy's is moved aside, never lost."""
    name = path.name
    committed = out_dir / CURRENT / name
    if not (committed.exists() or committed.is_symlink()):
        _copy_as_links(path, committed)
    if not path.is_dir():
        _set_link(path, f"{CURRENT}/{name}")
        return
    with _unserved(path) as free:
        if not free:
            raise ResultsFolderError(f"{path}: is being served by `pp-jury serve`; stop that server (its votes "
                                     f"stay in {path / VOTES_FILE}) and rerun, or pass another --out")
        if (path / VOTES_FILE).exists() and not _same_votes(path, committed):
            _keep_votes(path, out_dir)
        else:
            aside = out_dir / f"{LEGACY_PREFIXES[1]}{name}-{secrets.token_hex(4)}"
            os.replace(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
    _set_link(path, f"{CURRENT}/{name}")


def _real_entries(out_dir: Path, names: Sequence[str]) -> list[str]:
    return [n for n in names if (out_dir / n).exists() and not (out_dir / n).is_symlink()]


def _adopt_legacy(out_dir: Path, names: Sequence[str]) -> None:
    """Make results of the older layout (real files in OUT/) the committed generation, then link them.

    The generation is a hard-linked copy of those entries, complete before `current` points to it; each real
    entry is then replaced by its link: a file in one rename, a folder after being renamed aside (for an instant
    that path is missing). Every path shows the old results throughout."""
    legacy = _real_entries(out_dir, names)
    if not legacy:
        return
    if committed_generation(out_dir) is None:
        gen = new_generation(out_dir)
        log.info("moving the results in %s into %s", out_dir, gen)
        for name in legacy:
            _copy_as_links(out_dir / name, gen / name)
        _fsync_tree(gen)
        _set_link(out_dir / CURRENT, f"{GENERATIONS}/{gen.name}")
    for name in legacy:
        _replace_entry(out_dir / name, out_dir)


def _drop_dangling_links(out_dir: Path, names: Sequence[str]) -> None:
    """Remove the links `OUT/<name>` -> `current/<name>` while nothing is committed (a first evaluation that was
    interrupted after making them): a reader then finds no results, not links to a missing folder."""
    for name in names:
        path = out_dir / name
        if _link_target(path) == f"{CURRENT}/{name}" and not path.exists():
            path.unlink(missing_ok=True)


def _ensure_links(out_dir: Path, names: Sequence[str]) -> None:
    """`OUT/<name>` -> `current/<name>` for every result name (made once, just before the first commit)."""
    for name in names:
        path = out_dir / name
        want = f"{CURRENT}/{name}"
        if _link_target(path) == want:
            continue
        if path.exists() and not path.is_symlink():
            _replace_entry(path, out_dir)
        else:
            _set_link(path, want)


def tidy(out_dir: Path, names: Sequence[str]) -> None:
    """Bring `out_dir` to a clean committed state: remove what a killed evaluation left (unfinished or replaced
    generations, temporary links, older-layout staging folders), adopt older-layout results, make the links."""
    pointer = out_dir / CURRENT
    if pointer.exists() and _link_target(pointer) is None:
        raise ResultsFolderError(f"{pointer}: is not the link pp-evaluate writes; move it out of the results "
                                 "folder or pass another --out")
    for entry in out_dir.iterdir():
        if entry.name.startswith(TMP_LINK_PREFIX) and entry.is_symlink():
            entry.unlink(missing_ok=True)
        elif entry.name.startswith(LEGACY_PREFIXES):
            log.info("removing unfinished results from an interrupted evaluation: %s", entry)
            shutil.rmtree(entry, ignore_errors=True)
    _adopt_legacy(out_dir, names)
    if committed_generation(out_dir) is None:
        _drop_dangling_links(out_dir, names)
    else:
        _ensure_links(out_dir, names)
    _report_kept(_retire_generations(out_dir), out_dir, logging.INFO)


def commit_generation(gen: Path, out_dir: Path, names: Sequence[str]) -> None:
    """Make the fully written generation `gen` the committed results: one `os.replace` of `OUT/current`."""
    missing = [n for n in names if not (gen / n).exists()]
    if missing:
        raise ResultsFolderError(f"{gen}: {', '.join(missing)} not written; nothing was committed")
    _fsync_tree(gen)
    _adopt_legacy(out_dir, names)  # no-ops in a tidy folder: the links exist before the switch
    _ensure_links(out_dir, names)
    _set_link(out_dir / CURRENT, f"{GENERATIONS}/{gen.name}")
    _fsync_dir(out_dir)
    _report_kept(_retire_generations(out_dir), out_dir, logging.WARNING)
