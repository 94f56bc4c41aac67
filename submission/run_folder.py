"""Write a run folder under the run contract, resumably and shard by shard.

Layout (the contract `evaluator/contracts/run_folder.py`; docs/design.md): `runs/<run>/` holds, for every
original `<id>.png`, one `<id>.png` (uint8 RGB, the original's width and height) or `<id>.jpg` (attacks that write
JPEG bytes), plus `run.json` with `team, run, method, params, biqa, created, kit_version, seed` (and extra keys:
status, shard count, target, the model's weights hash, the task rules, library versions). The attack's per-image
log is `log.csv` in the run's work folder `runs/.pp-attack/<run>/`, a hidden sibling: the contract allows only images and run.json inside the
run, and the evaluator skips names that start with '.':

    image, score_before, score_after, score_jpeg, raw_before, raw_after, psnr, seconds

score_before / score_after: clipped BIQA scores of the original and of the file as written (after rounding to
8 bits, or decoding the JPEG); score_jpeg: of the organizer's round trip (`OrganizerCodec.roundtrip`, JPEG-90) of
the written image; psnr in dB against the original; seconds: the attack's wall time for the image (its batch's
time divided by the batch size).

Crash safety: an image file is written atomically (temp file + os.replace) before its log row is appended, so a
crash loses only images in flight; a rerun skips every image that has both its file and its log row. A shard
`i/n` (0-based) takes images i, i+n, i+2n, ... of the sorted originals and logs to `log.shard<i>of<n>.csv`
(one file per shard, so concurrent processes never append to the same file);
`finalize` checks that every original has its file and row, merges the shard logs into `log.csv`, and marks
run.json complete. An unsharded run finalizes itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from evaluator.biqa.base import BIQAModel
from evaluator.codec import OrganizerCodec
from evaluator.common.device import model_device
from evaluator.common.imageio import load_rgb, probe_image, save_png, to_batch, to_tensor, to_uint8
from evaluator.scoring.metrics import psnr
from submission.attacks.framework.driver import Attack
from submission.attacks.framework.params import AttackError
from evaluator.common.atomic import atomic_open, write_bytes_atomic
from evaluator.common.errors import EXIT_INCOMPLETE, OriginalsError
from evaluator.common.imageio import ImageError
from evaluator.contracts.run_folder import IMAGE_EXTENSIONS, RUN_JSON, new_run_meta, utc_now, write_run_json
from evaluator.contracts.run_folder import read_run_json as contract_read_run_json

log = logging.getLogger(__name__)

LOG_CSV = "log.csv"
WORK_ROOT = ".pp-attack"  # runs/.pp-attack/<run>/: the work folders, siblings of the runs
LOG_FIELDS = ("image", "score_before", "score_after", "score_jpeg", "raw_before", "raw_after", "psnr", "seconds")
ORIGINAL_SUFFIXES = (".png",)
IDENTITY_KEYS = ("method", "params", "seed", "biqa", "biqa_weights_sha256", "biqa_random_weights_seed")


class RunFolderError(AttackError):
    """A run folder that cannot be written or finalized; the message names the folder, the problem and the fix."""


class IncompleteRunError(RunFolderError):
    """`finalize` found originals without their image or log row (exit code 5: rerun the shards it names)."""

    exit_code = EXIT_INCOMPLETE


@dataclass(frozen=True)
class Shard:
    """Slice `index` of `count` (0-based): images index, index + count, ... of the sorted originals."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise RunFolderError(f"shard {self.index}/{self.count}: need 0 <= i < n (0-based), e.g. --shard 0/4")

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(t) for t in text.split("/"))
        except ValueError:
            raise RunFolderError(f"--shard {text!r}: write i/n with 0 <= i < n, e.g. 0/4") from None
        return cls(i, n)

    def take(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.index :: self.count])

    @property
    def log_name(self) -> str:
        return LOG_CSV if self.count == 1 else f"log.shard{self.index}of{self.count}.csv"


@dataclass(frozen=True)
class RunSpec:
    """What identifies a run (and goes into run.json)."""

    team: str
    run: str
    method: str
    params: dict[str, Any]
    biqa: str
    seed: int
    biqa_weights_sha256: str | None = None
    biqa_random_weights_seed: int | None = None  # the --random-weights opt-in (tests only): scores meaningless
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "seed": self.seed,
            "biqa": self.biqa,
            "biqa_weights_sha256": self.biqa_weights_sha256,
            "biqa_random_weights_seed": self.biqa_random_weights_seed,
        }


def list_originals(folder: str | Path) -> list[Path]:
    """The sorted `<id>.png` files of `folder`; `OriginalsError` when the folder is missing or holds none."""
    d = Path(folder)
    if not d.is_dir():
        raise OriginalsError(f"--originals {d}: not a folder; point it at the folder of original <id>.png images")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in ORIGINAL_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise OriginalsError(f"--originals {d}: holds no .png image; point it at the folder of original images")
    return files


def check_originals(paths: Iterable[Path]) -> None:
    """Decode every original once under the kit's image policy; the first failure raises `OriginalsError` with
    its `ImageError`'s message (which names the file, the problem and the fix)."""
    for p in paths:
        try:
            load_rgb(p)
        except ImageError as exc:
            raise OriginalsError(str(exc)) from exc




def read_run_json(out: Path) -> dict[str, Any]:
    """run.json of the run folder `out`, read by the evaluator's rules (`evaluator.contracts.run_folder.
    read_run_json`: strict JSON, no NaN or duplicate keys, the required keys and their types); RunFolderError
    naming every problem otherwise."""
    meta, issues = contract_read_run_json(out)
    if meta is None or issues:
        raise RunFolderError(f"{out / RUN_JSON}: " + "; ".join(f"{i.problem} ({i.fix})" for i in issues)
                             + ". Is this a pp-attack run folder? pp-evaluate would refuse it too.")
    return meta


ORIGINALS_POINTER = "originals.path"  # in work_dir(out), never submitted: where this machine keeps the originals


def originals_sha256(files: Sequence[Path]) -> str:
    """Identity of an image set: sha256 over the lines `<file name>\t<sha256 of its bytes>\n` of the sorted
    originals (`list_originals`). Equal for the same images wherever they are kept."""
    h = hashlib.sha256()
    for p in sorted(files, key=lambda f: f.name):
        h.update(f"{p.name}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _record_originals(originals: Path, out: Path) -> dict[str, str]:
    """run.json's `originals`: the folder's name and `originals_sha256`, no path (run.json is submitted: nothing
    of the participant's folder layout in it). The absolute path goes to `work_dir(out)/originals.path`, which
    stays on this machine, for `finalize`."""
    originals = Path(originals).resolve()
    pointer = work_dir(out) / ORIGINALS_POINTER
    pointer.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(pointer, os.fsencode(originals))
    return {"folder": originals.name, "sha256": originals_sha256(list_originals(originals))}


def _find_originals(out: Path, meta: dict[str, Any]) -> Path:
    """The originals folder of the run in `out` when finalize got no --originals: the path this machine noted
    (`work_dir(out)/originals.path`), else a folder of the recorded name in the current folder or next to the run
    or one of its parents, whose images have the recorded sha256. OriginalsError when none is found."""
    rec = meta.get("originals")
    if isinstance(rec, str):  # run.json of an older kit: the folder relative to the run
        return out / rec
    if not (isinstance(rec, dict) and isinstance(rec.get("folder"), str) and isinstance(rec.get("sha256"), str)):
        raise RunFolderError(f"{out / RUN_JSON}: 'originals' is {rec!r}, not the {{folder, sha256}} pp-attack "
                             "writes; pass the originals folder: pp-attack finalize RUN --originals DIR")
    pointer = work_dir(out) / ORIGINALS_POINTER
    places = [Path(os.fsdecode(pointer.read_bytes()))] if pointer.is_file() else []
    places += [Path.cwd() / rec["folder"]] + [d / rec["folder"] for d in Path(out).resolve().parents]
    for place in dict.fromkeys(places):
        try:
            if place.is_dir() and originals_sha256(list_originals(place)) == rec["sha256"]:
                return place
        except (OSError, OriginalsError):
            continue
    raise OriginalsError(f"{out}: the originals it was made from (a folder named {rec['folder']!r}, image set "
                         f"sha256 {rec['sha256'][:12]}...) were not found (looked in {pointer}, the current folder "
                         "and beside the run and its parents); pass them: pp-attack finalize RUN --originals DIR")


def _check_originals_match(out: Path, meta: dict[str, Any], src: Path) -> None:
    """Refuse --originals that are not the image set run.json records (no record, as from an older kit: no check)."""
    rec = meta.get("originals")
    if isinstance(rec, dict) and isinstance(rec.get("sha256"), str):
        have = originals_sha256(list_originals(src))
        if have != rec["sha256"]:
            raise OriginalsError(f"--originals {src}: these are not the images the run was made from (image set "
                                 f"sha256 {have[:12]}..., run.json records {rec['sha256'][:12]}... for a folder "
                                 f"named {rec.get('folder')!r}); pass the originals the attack used")


def open_run(out: str | Path, spec: RunSpec, *, n_images: int, shard: Shard, originals: Path) -> Path:
    """Create `out` with run.json, or check that the run already there is the same one (resume).

    Refuses (RunFolderError, nothing touched) a folder that holds another run (different method, params, seed,
    BIQA or weights) or files but no run.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: exists and is not a folder; choose a new run folder")
    if out.is_dir() and (out / RUN_JSON).exists():
        meta = read_run_json(out)
        have = {k: meta.get(k) for k in IDENTITY_KEYS}
        want = json.loads(json.dumps(spec.identity()))
        if have != want:
            diff = [k for k in IDENTITY_KEYS if have.get(k) != want.get(k)]
            details = "; ".join(f"{k}: folder has {have.get(k)!r}, asked {want.get(k)!r}" for k in diff)
            raise RunFolderError(
                f"--out {out}: already holds a different run ({details}); choose another --out, or delete the "
                f"folder to start over"
            )
        if meta.get("shards") not in (None, shard.count):
            raise RunFolderError(
                f"--out {out}: was started with {meta.get('shards')} shards, asked {shard.count}; use the same n"
            )
        return out
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise RunFolderError(f"--out {out}: exists, holds files and no run.json; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in work_dir(out).glob("log*.csv"):  # logs of an earlier run of that name, deleted since
        stale.unlink()
    meta = new_run_meta(
        team=spec.team, run=spec.run, method=spec.method, params=spec.params, biqa=spec.biqa, seed=spec.seed,
        biqa_weights_sha256=spec.biqa_weights_sha256, biqa_random_weights_seed=spec.biqa_random_weights_seed,
        status="in progress", shards=shard.count, n_images=n_images, originals=_record_originals(originals, out),
        **spec.extra,
    )
    write_run_json(out, meta)
    return out


def read_log(path: Path) -> dict[str, dict[str, str]]:
    """Rows of one log file by image id (the last row wins); a torn last line (crash mid-write) is ignored."""
    rows: dict[str, dict[str, str]] = {}
    if not path.exists():
        return rows
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("image") and row.get("seconds") not in (None, ""):
                rows[row["image"]] = row
    return rows


def work_dir(out: str | Path) -> Path:
    """Where a run's logs live: `<parent>/.pp-attack/<run>/` (outside the run, skipped by the evaluator)."""
    out = Path(out)
    return out.parent / WORK_ROOT / out.name


def log_path(out: str | Path) -> Path:
    """The run's merged per-image log (complete after `finalize`)."""
    return work_dir(out) / LOG_CSV


def remove_stale_temps(out: Path) -> None:
    """Delete temp files an interrupted atomic write left in the run (`.<name>.<random>.tmp`)."""
    for p in out.glob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            p.unlink()


def all_log_rows(out: Path) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    d = work_dir(out)
    if not d.is_dir():
        return rows
    for p in sorted(d.glob("log*.csv")):
        rows.update(read_log(p))
    return rows


def output_file(out: Path, image_id: str) -> Path | None:
    for suffix in IMAGE_EXTENSIONS:
        p = out / f"{image_id}{suffix}"
        if p.exists():
            return p
    return None


def done_images(out: Path) -> set[str]:
    """Images with both their output file and a log row."""
    return {i for i in all_log_rows(out) if output_file(out, i) is not None}


def append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as f:
        if not new:
            # a crash may have left a torn last line: make sure the row starts on a fresh line
            with path.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write("\n")
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow({k: row[k] for k in LOG_FIELDS})
        f.flush()
        os.fsync(f.fileno())


def _fmt(v: float) -> str:
    return "inf" if v == float("inf") else f"{v:.6f}"


def _batches(paths: list[Path], batch_size: int) -> list[list[Path]]:
    """Consecutive groups of at most batch_size images of equal size (read from the headers; pixels are loaded
    by the caller one group at a time)."""
    groups: list[list[Path]] = []
    sizes: dict[Path, tuple[int, int]] = {}
    for p in paths:
        h = probe_image(p)
        sizes[p] = (h.height, h.width)
    for p in paths:
        if groups and len(groups[-1]) < batch_size and sizes[groups[-1][0]] == sizes[p]:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


@torch.no_grad()
def _score(model: BIQAModel, rgb: np.ndarray, device: torch.device) -> float:
    return float(model(to_tensor(rgb).to(device))[0])


def _clipped(model: BIQAModel, raw: torch.Tensor) -> float:
    """A raw score clipped to the model's score range, as `model(x)` (= raw_score(x).clamp(lo, hi)) gives it."""
    lo, hi = model.info.score_range
    return float(raw.clamp(lo, hi))


def attack_folder(
    attack: Attack,
    model: BIQAModel,
    originals: Sequence[Path],
    out: Path,
    *,
    seed: int,
    shard: Shard,
    batch_size: int,
    codec: OrganizerCodec,
    threshold: float,
    progress: bool = True,
) -> dict[str, int]:
    """Attack this shard's images not done yet; write each file atomically, then its log row. `threshold` and
    `codec` are the task's (`task.biqa.threshold`, `OrganizerCodec.from_task(task)`): the target of attacks whose
    target is None, and the JPEG the attacks optimize for (through_jpeg, pgd-dct) and score_jpeg is measured with.

    Returns {"done_before": ..., "attacked": ..., "shard_images": ...}."""
    mine = shard.take(list(originals))
    done = done_images(out)
    todo = [p for p in mine if p.stem not in done]
    work_dir(out).mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    shard_log = work_dir(out) / shard.log_name
    device = model_device(model)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"{attack.name} {out.name}", unit="img", leave=False)
        except ImportError:  # pragma: no cover
            bar = None
    for group in _batches(todo, batch_size):
        rgbs = [load_rgb(p) for p in group]
        ids = [p.stem for p in group]
        x = to_batch(rgbs)
        result = attack.run(x, model, ids=ids, seed=seed, threshold=threshold, codec=codec)
        per_image = result.seconds / len(group)
        for k, (p, rgb) in enumerate(zip(group, rgbs)):
            if result.jpeg_bytes is not None:
                data = result.jpeg_bytes[k]
                written = codec.decompress(data)
                if written.shape != rgb.shape:
                    raise RunFolderError(f"{attack.name}: JPEG for {p.name} decodes to {written.shape}, "
                                         f"expected {rgb.shape}")
                target = out / f"{p.stem}.jpg"
                write_bytes_atomic(target, data)
                (out / f"{p.stem}.png").unlink(missing_ok=True)
            else:
                written = to_uint8(result.x_adv[k])
                save_png(out / f"{p.stem}.png", written)
                (out / f"{p.stem}.jpg").unlink(missing_ok=True)
            row = {
                "image": p.stem,
                "score_before": _fmt(_clipped(model, result.raw_before[k])),  # the attack scored the original
                "score_after": _fmt(_score(model, written, device)),
                "score_jpeg": _fmt(_score(model, codec.roundtrip(written), device)),
                "raw_before": _fmt(float(result.raw_before[k])),
                "raw_after": _fmt(float(result.raw_after[k])),
                "psnr": _fmt(psnr(rgb, written)),  # the evaluator's PSNR (`evaluator.scoring.metrics.psnr`)
                "seconds": _fmt(per_image),
            }
            append_log(shard_log, row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {"done_before": len(mine) - len(todo), "attacked": len(todo), "shard_images": len(mine)}


def finalize(out: str | Path, originals: str | Path | None = None) -> dict[str, Any]:
    """Check every original has its file and log row, merge shard logs into log.csv, mark run.json complete.

    `originals` defaults to the folder run.json records (`_find_originals`); given, it must hold the image set
    run.json records (`OriginalsError` otherwise). Raises `IncompleteRunError` listing what is missing."""
    out = Path(out)
    if not (out / RUN_JSON).exists():
        raise RunFolderError(f"{out}: no run.json; finalize a folder that pp-attack wrote")
    meta = read_run_json(out)
    if originals is None:
        src = _find_originals(out, meta)
    else:
        src = Path(originals)
        _check_originals_match(out, meta, src)
    ids = [p.stem for p in list_originals(src)]
    rows = all_log_rows(out)
    missing = [i for i in ids if i not in rows or output_file(out, i) is None]
    if missing:
        n = int(meta.get("shards") or 1)
        owners = sorted({ids.index(i) % n for i in missing})
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise IncompleteRunError(
            f"{out}: {len(missing)} of {len(ids)} images not done ({shown}); rerun shard(s) "
            f"{', '.join(f'{o}/{n}' for o in owners)} with the same command, then finalize again"
        )
    stray = [p.name for p in out.iterdir() if p.suffix in IMAGE_EXTENSIONS and p.stem not in set(ids)]
    if stray:
        raise RunFolderError(f"{out}: files with no original: {', '.join(sorted(stray)[:10])}; remove them")
    tmp_rows = [rows[i] for i in ids]
    remove_stale_temps(out)
    wd = work_dir(out)
    wd.mkdir(parents=True, exist_ok=True)
    with atomic_open(wd / LOG_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(tmp_rows)
    for p in wd.glob("log.shard*.csv"):
        p.unlink()
    meta["status"] = "complete"
    meta["n_images"] = len(ids)
    meta["finished"] = utc_now()
    meta["summary"] = summarize(tmp_rows, run_threshold(meta, out))
    write_run_json(out, meta)
    return meta


def run_threshold(meta: dict[str, Any], out: Path) -> float:
    """The threshold the run was made for: run.json's `threshold` (pp-attack writes the task's)."""
    value = meta.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 100:
        raise RunFolderError(f"{out / RUN_JSON}: 'threshold' is {value!r}, not a score in (0, 100); this run.json "
                             f"was not written by pp-attack, or was edited: restore it or rerun the attack")
    return float(value)


def summarize(rows: Sequence[dict[str, str]], threshold: float) -> dict[str, float | None]:
    """Means over the log rows and the success rates below the threshold in the image domain and after JPEG."""
    if not rows:
        return {}
    after = np.array([float(r["score_after"]) for r in rows])
    jpeg = np.array([float(r["score_jpeg"]) for r in rows])
    ps = np.array([float(r["psnr"]) for r in rows])
    finite = ps[np.isfinite(ps)]
    return {
        "success_image": float(np.mean(after < threshold)),
        "success_jpeg": float(np.mean(jpeg < threshold)),
        "mean_score_after": float(after.mean()),
        "mean_score_jpeg": float(jpeg.mean()),
        "mean_psnr_finite": float(finite.mean()) if finite.size else None,
        "mean_seconds": float(np.mean([float(r["seconds"]) for r in rows])),
    }


__all__ = [
    "IncompleteRunError", "LOG_CSV", "LOG_FIELDS", "RUN_JSON", "RunFolderError", "RunSpec", "Shard", "attack_folder",
    "check_originals", "done_images", "finalize", "log_path", "work_dir", "list_originals", "open_run", "read_log",
    "summarize",
]
