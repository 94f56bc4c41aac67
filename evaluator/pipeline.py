"""The organizer's scoring pipeline (liu2020, section 3), from a folder of runs to the results contract.

`evaluate(originals_dir, runs_dir, out_dir, task, model)`:
1. Score the originals clean (no JPEG). An original scored below the threshold is reported (task.json, report,
   log) and left out of every per-run number: the test set is defined as high quality.
2. Validate every run (`evaluator.intake.runs`, headers only: each image is decoded once, when it is scored); an
   invalid run, or one with an image whose pixels do not decode, becomes one `invalid` row with its errors
   joined by " | ", and every other run is still scored.
3. For every valid run and image: compress the submitted image with the organizer codec (after the steps of a
   longer task `preprocess.chain`: `evaluator.defenses.official_codec`), decode, score it in
   batches, and compute PSNR and SSIM of the submitted image against its original. Images are streamed
   (one image id at a time, all runs' versions of it batched together), never all held in memory. Decoding, the
   JPEG round trip and PSNR/SSIM run in `workers` processes (one image id per job, a few jobs ahead); a model
   registered `thread_independent` on the CPU (brisque, niqe, piqe) scores in those jobs, any other model in
   this process. Every value depends on the files only, not on `workers` or the thread count. The same pool
   (`evaluator.common.worker_pool`) decodes the originals of step 1 and makes the report gallery's images.
4. Per run: accuracy, accuracy reduction, the gate, mean score, the five MSU-style scores, mean PSNR and SSIM.
5. Select the jury images (`evaluator.scoring.selection`) and write the blinded jury package for the qualified runs.
6. Write runs.csv, scores.csv, selection.csv, task.json, report.html and jury/ into a new generation folder
   `out_dir/.generations/<id>/`, then switch the one link `out_dir/current` to it (`evaluator.outputs.results_io`):
   an interrupted run leaves the old results intact, and no reader ever sees old and new files mixed.
   A model that scores with random weights (`info.random_weights_seed`, the `--random-weights` opt-in) is stamped
   into task.json, runs.csv (column `random_weights_seed`) and the report's banner; a model that needs weights
   and has neither a weights hash nor that seed is refused.

Every computed value is cached in `out_dir/.cache/scores.sqlite` (`evaluator.scoring.score_cache`), so a rerun with one
more run scores only that run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from evaluator.common.errors import ResultsError
from evaluator.scoring import metrics
from evaluator.biqa.base import BIQAModel
from evaluator.codec import OrganizerCodec, pillow_reproduces
from evaluator.config import TaskConfig
from evaluator.defenses import PreprocessedCodec, official_codec
from evaluator.common.device import model_device
from evaluator.common.hashing import file_sha256
from evaluator.common.worker_pool import WorkerPool, check_picklable, default_workers, job_context
from evaluator.common.imageio import load_rgb, to_batch
from evaluator.contracts.results import (REPORT_HTML, RESULT_NAMES, RUNS_COLUMNS, RUNS_CSV, SCORES_COLUMNS,
                                         SCORES_CSV, SELECTION_COLUMNS, SELECTION_CSV, JURY_DIR, TASK_JSON,
                                         write_csv, write_task_json)
from evaluator.outputs.jury_export import JuryItem, write_jury_package
from evaluator.outputs.report import write_report
from evaluator.outputs.report_gallery import (JpegMemo, OriginalMaterial, PairMaterial, gallery_html,
                                              original_material, pair_material)
from evaluator.outputs.results_io import (ResultsFolderError, commit_generation, committed_generation,
                                          new_generation, tidy)
from evaluator.scoring.fidelity import fidelity
from evaluator.common.imageio import ImageError
from evaluator.intake.lookalike import lookalike_warnings
from evaluator.common.text import show_name
from evaluator.intake.runs import Limits, RunIssue, RunReadError, ValidatedRun, find_runs, index_originals, validate_run
from evaluator.common.versions import VERSIONS_KEY, kit_version, library_versions
from evaluator.scoring.score_cache import CacheKeyContext, ScoreCache, model_hash, model_key, rules_hash
from evaluator.scoring.results import CacheStats, EvaluationResult, ImageScore, RunResult
from evaluator.scoring.selection import score_variances, select_images

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
CACHE_FILE = "scores.sqlite"
LOCK_FILE = ".lock"
ORIGINAL_SUFFIXES = (".png", ".jpg", ".jpeg")
WARM_SIDE = 256  # side of the noise image a model scoring in the jobs is warmed up with (NIQE needs >= 192)


class _Progress(tqdm):
    """tqdm without its monitor thread: the worker pool forks while a bar is open, and a fork must not copy a
    thread that may hold a lock into the workers (the monitor takes tqdm's lock and writes to stderr)."""

    monitor_interval = 0


class PipelineError(ResultsError, RuntimeError):
    """The evaluation cannot go on (the message names the file and what to do)."""


@dataclass(frozen=True)
class ExtraOutputs:
    """What an `extra` step of `evaluate` added to the generation: file names (linked from OUT like the others)
    and HTML sections for the report."""

    names: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()


#: An extra step of one evaluation (`pp-evaluate --matrix`: `evaluator.scoring.matrix`), run under the results lock
#: before the report is written: (staging folder, result, task.json meta, valid runs by name, original paths) ->
#: ExtraOutputs. Its files go into the staging folder, so they are committed with the rest or not at all.
ExtraStep = Callable[[Path, EvaluationResult, dict, dict[str, ValidatedRun], dict[str, Path]], ExtraOutputs]


# -- scoring ---------------------------------------------------------------------------------------------------
def score_images(model: BIQAModel, images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> list[float]:
    """The model's scores of same-size (H, W, 3) uint8 images, in one call; PipelineError unless it returns one
    finite score per image."""
    with torch.inference_mode():
        y = model(to_batch(images, device))
    values = [float(v) for v in y.detach().to("cpu", torch.float64).reshape(-1)]
    if len(values) != len(images) or not all(math.isfinite(v) for v in values):
        raise PipelineError(f"the BIQA model returned {values!r} for a batch of {len(images)} images; "
                            "it must return one finite score per image")
    return values


def scores_in_jobs(model: BIQAModel) -> bool:
    """Whether the model scores inside the per-image jobs (the worker processes) instead of this process: a model
    on the CPU registered `thread_independent` (brisque, niqe, piqe: bit-identical for any thread count and batch
    composition, tested), so the numbers are the same either way. Others (KonCept512, a GPU) score here."""
    info = getattr(model, "info", None)
    return bool(getattr(info, "thread_independent", False)) and model_device(model).type == "cpu"


@dataclass(frozen=True)
class _JobScorer:
    """The model as the jobs see it (`WorkerPool` context): scores in order, in batches of at most `batch_size`
    consecutive images of one size (as `_BatchScorer`: originals may be landscape and portrait)."""

    model: BIQAModel
    batch_size: int

    def spans(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
        """[start, stop) of each model call for images of these shapes, in order."""
        out, start = [], 0
        for k in range(1, len(shapes) + 1):
            if k == len(shapes) or shapes[k] != shapes[start] or k - start >= self.batch_size:
                out.append((start, k))
                start = k
        return out

    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        return [v for a, b in self.spans([im.shape for im in images]) for v in score_images(self.model, images[a:b])]

    def batches(self, n: int) -> int:
        """Model calls for n images of one size (one image id's versions: validated to its original's size)."""
        return -(-n // self.batch_size)


class _BatchScorer:
    """Collects same-shape images and scores them with the model `batch_size` at a time."""

    def __init__(self, model: BIQAModel, batch_size: int, on_scored: Callable[[list[str], list[float]], None]):
        self.model, self.batch_size, self.on_scored = model, max(1, batch_size), on_scored
        self.device = model_device(model)
        self.keys: list[str] = []
        self.images: list[np.ndarray] = []
        self.batches = 0

    def add(self, key: str, rgb: np.ndarray) -> None:
        if self.images and self.images[0].shape != rgb.shape:
            self.flush()
        self.keys.append(key)
        self.images.append(rgb)
        if len(self.images) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.images:
            return
        values = score_images(self.model, self.images, self.device)
        self.batches += 1
        keys = self.keys
        self.keys, self.images = [], []
        self.on_scored(keys, values)


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out_dir/.lock` so that two evaluations never write one results folder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, run one evaluation at a time
        yield
        return
    with open(out_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"{out_dir}: another pp-evaluate is writing these results; wait for it to "
                                "finish or pass another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _original_paths(originals_dir: Path, ids: Sequence[str]) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for image in ids:
        for suffix in ORIGINAL_SUFFIXES:
            p = originals_dir / f"{image}{suffix}"
            if p.is_file():
                paths[image] = p
                break
        else:
            raise PipelineError(f"{originals_dir}: original {image!r} was indexed but no {image}.png is there; "
                                "do not change the originals folder while evaluating")
    return paths


@dataclass
class _Counters:
    hits: int = 0
    computed: int = 0
    batches: int = 0


def _score_originals(paths: dict[str, Path], shas: dict[str, str], model: BIQAModel, cache: ScoreCache,
                     cached: dict[str, dict[str, Any]], batch_size: int, counters: _Counters, progress: bool,
                     pool: WorkerPool) -> dict[str, float]:
    """Clean score of every original (by its file's sha256; `cached`: the cache's "clean" entries of those
    shas): decoded (and scored, with `scores_in_jobs`) in `pool`'s jobs of `batch_size` originals, else here."""
    by_sha: dict[str, float] = {sha: v["score"] for sha, v in cached.items()}
    counters.hits += sum(1 for image in paths if shas[image] in by_sha)

    def store(keys: list[str], values: list[float]) -> None:
        cache.put_many("clean", {k: {"score": v} for k, v in zip(keys, values)}, rules=False)
        by_sha.update(zip(keys, values))

    scorer = _BatchScorer(model, batch_size, store)
    todo: dict[str, Path] = {}  # sha -> the first original with that file
    for image in sorted(paths):
        if shas[image] not in by_sha:
            todo.setdefault(shas[image], paths[image])
    keys = list(todo)
    chunks = [keys[k:k + max(1, batch_size)] for k in range(0, len(keys), max(1, batch_size))]
    jobs = ((chunk, ([todo[sha] for sha in chunk],)) for chunk in chunks)
    with _Progress(total=len(keys), desc="originals", unit="img", disable=not progress) as bar:
        for chunk, (pixels, scores, calls) in pool.run(_original_job, jobs, inline=len(keys) < 8):
            if scores is not None:
                store(chunk, scores)
                counters.batches += calls
            else:
                for sha, rgb in zip(chunk, pixels):
                    scorer.add(sha, rgb)
            counters.computed += len(chunk)
            bar.update(len(chunk))
    scorer.flush()
    counters.batches += scorer.batches
    return {image: by_sha[shas[image]] for image in paths}


def _validate_safely(path: Path, headers: dict, limits: Limits) -> ValidatedRun:
    """`validate_run`, with any unexpected error turned into an invalid run: one bad run never stops the rest."""
    try:
        return validate_run(path, headers, limits, decode=False)
    except Exception as exc:  # noqa: BLE001 - a submission must not be able to abort the evaluation
        log.exception("validating %s failed unexpectedly", show_name(path.name))
        return ValidatedRun(name=path.stem if path.suffix.lower() == ".zip" else path.name, source=path,
                            issues=[RunIssue(path.name, f"could not be validated ({type(exc).__name__}: {exc})",
                                             "report this to the organizers with the run attached")],
                            meta=None, images={})


def _flag_name_collisions(validated: Sequence[ValidatedRun]) -> None:
    """Runs whose names are equal up to case (a.zip and a.ZIP, folder b and b.Zip) are all made invalid."""
    groups: dict[str, list[ValidatedRun]] = {}
    for v in validated:
        groups.setdefault(v.name.casefold(), []).append(v)
    for members in groups.values():
        if len(members) > 1:
            names = ", ".join(sorted(show_name(m.source.name) for m in members))
            for m in members:
                m.issues.append(RunIssue(show_name(m.source.name),
                                         f"has the same run name as another submission ({names})",
                                         "keep one folder or zip per run name"))


@dataclass(frozen=True)
class _Entry:
    """One submitted image of one run to prepare: JPEG round trip (need_jpeg) and/or fidelity (need_fid)."""

    run: str
    ref: Any  # evaluator.intake.runs.ImageRef (picklable)
    need_jpeg: bool
    need_fid: bool


def _prepare_image(original_path: Path, entries: Sequence[_Entry], codec: OrganizerCodec | PreprocessedCodec
                   ) -> list[tuple[str | None, str | None, np.ndarray | None, dict[str, float] | None, float | None]]:
    """Per entry: (decode error or None, sha256 of the JPEG bytes, decoded JPEG pixels, fidelity, score) of one
    image id: decode the submitted image, compress it with the organizer codec and decode that (when needed),
    PSNR and SSIM against the original (when needed); when the model scores in the jobs (`scores_in_jobs`), the
    decoded JPEGs are scored here, in entry order, and their score is returned instead of their pixels. A pure
    function of the files: the same in any worker process."""
    original: np.ndarray | None = None
    out: list[tuple[str | None, str | None, np.ndarray | None, dict[str, float] | None, float | None]] = []
    for e in entries:
        try:
            rgb = e.ref.load()
        except (ImageError, RunReadError) as exc:
            out.append((str(exc), None, None, None, None))
            continue
        fid = None
        if e.need_fid:
            if original is None:
                original = load_rgb(original_path)
            fid = fidelity(original, rgb)
        jpeg_sha, decoded = None, None
        if e.need_jpeg:
            data, decoded = codec.roundtrip_bytes(rgb)
            jpeg_sha = hashlib.sha256(data).hexdigest()
        out.append((None, jpeg_sha, decoded, fid, None))
    scorer = job_context()
    if isinstance(scorer, _JobScorer):
        made = [k for k, row in enumerate(out) if row[2] is not None]
        for k, score in zip(made, scorer.scores([out[k][2] for k in made])):
            out[k] = (*out[k][:2], None, out[k][3], score)
    return out


def _original_job(paths: Sequence[Path]) -> tuple[list[np.ndarray] | None, list[float] | None, int]:
    """A job of `_score_originals`: (None, their scores, model calls) when the model scores in the jobs, else
    (the originals' pixels, None, 0)."""
    pixels = [load_rgb(p) for p in paths]
    scorer = job_context()
    if not isinstance(scorer, _JobScorer):
        return pixels, None, 0
    return None, scorer.scores(pixels), len(scorer.spans([p.shape for p in pixels]))


def _warm_for_workers(codec: OrganizerCodec | PreprocessedCodec, scorer: _JobScorer | None = None
                      ) -> Callable[[], None]:
    """What this process does once before the pool forks, so that no worker does it: compile (or load) PSNR/SSIM,
    run the codec's Pillow probe (a PreprocessedCodec's JPEG is its `codec`) and, for a model that scores in the
    jobs, score one noise image (its compiled kernels load once, here; without this every worker loaded them)."""
    def warm() -> None:
        tiny = np.zeros((metrics.SSIM_MIN_SIDE, metrics.SSIM_MIN_SIDE, 3), np.uint8)
        fidelity(tiny, tiny)
        pillow_reproduces(getattr(codec, "codec", codec))
        if scorer is not None:
            noise = np.random.default_rng(0).integers(0, 256, (WARM_SIDE, WARM_SIDE, 3), dtype=np.uint8)
            try:
                scorer.scores([noise])
            except Exception as exc:  # noqa: BLE001 - only a warm-up: the real images say what is wrong
                log.debug("warming the model up failed (%s); each worker loads it itself", exc)
    return warm


def _score_runs(runs: Sequence[ValidatedRun], image_ids: Sequence[str], original_paths: dict[str, Path],
                original_shas: dict[str, str], model: BIQAModel, codec: OrganizerCodec, cache: ScoreCache,
                batch_size: int, counters: _Counters, progress: bool, pool: WorkerPool
                ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, RunIssue]]:
    """Post-JPEG score (by submitted sha256) and fidelity (by 'submitted:original' sha256) of every image.

    Runs are validated from headers only, so an image whose pixels do not decode shows up here: its run is
    returned in the third dict (run -> issue) and not scored further. Decoding, the JPEG round trip and PSNR/SSIM
    run in `pool`'s processes, one image id (all its runs) per job; the model scores in those jobs too
    (`scores_in_jobs`), else here, in batches. Every value is a function of the files only, so the numbers do not
    depend on the pool's size.
    """
    def fid_key(run: ValidatedRun, image: str) -> str:
        return f"{run.images[image].sha256}:{original_shas[image]}"

    jpeg_values = cache.get_many("jpeg", {r.images[i].sha256 for r in runs for i in image_ids})
    fid_values = cache.get_many("fidelity", {fid_key(r, i) for r in runs for i in image_ids}, rules=False,
                                model=False)
    failed: dict[str, RunIssue] = {}
    pending_sha: dict[str, str] = {}  # submitted sha -> sha of its JPEG bytes, until the batch is scored

    def store(keys: list[str], values: list[float]) -> None:
        fresh = {k: {"score": v, "jpeg_sha256": pending_sha.pop(k)} for k, v in zip(keys, values)}
        cache.put_many("jpeg", fresh)
        jpeg_values.update(fresh)

    planned_jpeg: set[str] = set()
    planned_fid: set[str] = set()

    def jobs() -> Iterator[tuple[Any, tuple]]:
        """Per image id: the entries to prepare (planned in image, run order; a file met twice is done once)."""
        for image in image_ids:
            entries, hits = [], []
            for run in runs:
                ref = run.images[image]
                fkey = fid_key(run, image)
                need_jpeg = ref.sha256 not in jpeg_values and ref.sha256 not in planned_jpeg
                need_fid = fkey not in fid_values and fkey not in planned_fid
                if not (need_jpeg or need_fid):
                    hits.append(run.name)
                    continue
                planned_jpeg.update([ref.sha256] if need_jpeg else [])
                planned_fid.update([fkey] if need_fid else [])
                entries.append(_Entry(run.name, ref, need_jpeg, need_fid))
            yield (image, hits, entries), (original_paths[image], entries, codec) if entries else None

    scorer = _BatchScorer(model, batch_size, store)
    total = len(runs) * len(image_ids)
    run_by_name = {r.name: r for r in runs}
    with _Progress(total=total, desc="runs x images", unit="img", disable=not progress) as bar:
        for (image, hits, entries), results in pool.run(_prepare_image, jobs(), inline=total < 8):
            counters.hits += len(hits)
            bar.update(len(hits))
            done_fid: dict[str, dict[str, float]] = {}
            scored_keys: list[str] = []  # scored in the job: stored once per job
            scored_values: list[float] = []

            def take(e: _Entry, jpeg_sha: str | None, decoded: np.ndarray | None, fid: dict | None,
                     score: float | None) -> None:
                if fid is not None:
                    done_fid[fid_key(run_by_name[e.run], image)] = fid
                if jpeg_sha is not None:
                    pending_sha[e.ref.sha256] = jpeg_sha
                    if score is not None:
                        scored_keys.append(e.ref.sha256)
                        scored_values.append(score)
                    else:
                        scorer.add(e.ref.sha256, decoded)

            for e, (error, jpeg_sha, decoded, fid, score) in zip(entries, results or []):
                bar.update()
                if e.run in failed and error is None:  # not counted; its values still serve a copy elsewhere
                    take(e, jpeg_sha, decoded, fid, score)
                    continue
                if e.run in failed:
                    continue
                if error is not None:
                    failed[e.run] = RunIssue(file=e.ref.name, problem=f"cannot be decoded ({error})",
                                             fix="re-export it as 8-bit RGB PNG and submit again")
                    log.warning("run %s: %s", show_name(e.run), show_name(str(failed[e.run])))
                    continue
                counters.computed += 1
                take(e, jpeg_sha, decoded, fid, score)
            if scored_keys:
                store(scored_keys, scored_values)
                counters.batches += pool.context.batches(len(scored_keys))
            if done_fid:
                cache.put_many("fidelity", done_fid, rules=False, model=False)
                fid_values.update(done_fid)
    scorer.flush()
    for run in runs:  # a file whose first copy (in another run) did not decode: this copy does not either
        if run.name not in failed:
            for image in image_ids:
                ref = run.images[image]
                if ref.sha256 not in jpeg_values or fid_key(run, image) not in fid_values:
                    failed[run.name] = RunIssue(file=ref.name, problem="cannot be decoded (the same file failed "
                                                "in another run)", fix="re-export it as 8-bit RGB PNG and submit again")
                    break
    counters.batches += scorer.batches
    return jpeg_values, fid_values, failed


# -- per-run numbers -------------------------------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def run_result(name: str, rows: Sequence[ImageScore], eligible: set[str], original_accuracy: float,
               task: TaskConfig) -> RunResult:
    """The runs.csv row of a scored run, from its scores.csv rows (only images with a high-quality original)."""
    used = [r for r in rows if r.image in eligible]
    if not used:
        return RunResult(run=name, status="scored", error="no image with a high-quality original to score")
    clean = [r.score_clean for r in used]
    after = [r.score for r in used]
    acc = metrics.accuracy(after, task.biqa.threshold)
    robust = metrics.robustness_scores(clean, after)
    return RunResult(
        run=name, status="scored", n_images=len(used), accuracy=acc,
        accuracy_reduction=metrics.accuracy_reduction(original_accuracy, acc),
        qualified=metrics.qualifies(acc, task.gate.max_accuracy), mean_score=_mean(after),
        **asdict(robust), psnr=_mean([r.psnr for r in used]), ssim=_mean([r.ssim for r in used]),
    )


def _random_weights_seed(model: BIQAModel) -> int | None:
    """The seed of the model's RANDOM weights (stamped into every output), None for a model with its real weights.

    A model whose info says it needs weights but that has neither a weights hash nor a random seed is refused:
    its scores would be those of an unknown, untrained network.
    """
    info = getattr(model, "info", None)
    seed = getattr(info, "random_weights_seed", None)
    if seed is None and getattr(info, "needs_weights", False) and not getattr(info, "weights_sha256", None):
        raise PipelineError(f"BIQA {info.name!r} needs weights and has none loaded (no weights_sha256, no "
                            "random_weights_seed); build it with evaluator.biqa.create(name, weights=PATH)")
    if seed is not None:
        log.warning("%s", info.random_weights_note())
    return seed


def _gallery_material(original_path: Path, pairs: Sequence[tuple[str, Any, bool]],
                      codec: OrganizerCodec | PreprocessedCodec
                      ) -> tuple[OriginalMaterial, dict[str, PairMaterial], dict[str, bytes]]:
    """A report-gallery job (a worker job: one original and its shown (run, ImageRef, in_jury) pairs): the
    original's pixels, per run its `PairMaterial` (the scored image is the codec's round trip of the submitted
    image) and, for the pairs the jury package holds, the scored JPEG bytes (written there, not made twice)."""
    base = load_rgb(original_path)
    made: dict[str, PairMaterial] = {}
    jpegs: dict[str, bytes] = {}
    for run, ref, in_jury in pairs:
        submitted = ref.load()
        data, scored = codec.roundtrip_bytes(submitted)
        made[run] = pair_material(base, submitted, scored)
        if in_jury:
            jpegs[run] = data
    return original_material(base), made, jpegs


def _thumbnail(rgb: np.ndarray, width: int = 192) -> bytes:
    from PIL import Image

    im = Image.fromarray(rgb)
    h = max(1, round(im.height * width / im.width))
    buf = io.BytesIO()
    im.resize((width, h), Image.Resampling.LANCZOS).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


# -- the pipeline ----------------------------------------------------------------------------------------------
def evaluate(originals_dir: str | Path, runs_dir: str | Path, out_dir: str | Path, task: TaskConfig,
             model: BIQAModel, *, batch_size: int = 8, progress: bool = True, limits: Limits | None = None,
             extra: ExtraStep | None = None, workers: int | None = None) -> EvaluationResult:
    """Score every run found in `runs_dir` (see `evaluator.intake.runs.find_runs`) and write the results into
    `out_dir` (with `extra`'s outputs, see `ExtraStep`). `workers`: processes that decode, JPEG-compress and
    compute PSNR/SSIM (None: `default_workers()`, 0: all in this process); the results do not depend on it."""
    runs_path, out_path = Path(runs_dir), Path(out_dir)
    if not runs_path.is_dir():
        raise PipelineError(f"{runs_path}: runs folder not found; pass the folder that holds the run folders/zips")
    out_resolved = out_path.resolve()
    if out_resolved in (runs_path.resolve(), Path(originals_dir).resolve()):
        raise PipelineError(f"{out_path}: the results folder must not be the runs or the originals folder; "
                            "pass another --out")
    run_paths = [p for p in find_runs(runs_path) if p.resolve() != out_resolved]
    return evaluate_runs(originals_dir, run_paths, out_dir, task, model, batch_size=batch_size,
                         progress=progress, limits=limits, extra=extra, workers=workers)


def evaluate_runs(originals_dir: str | Path, run_paths: Sequence[Path], out_dir: str | Path, task: TaskConfig,
                  model: BIQAModel, *, batch_size: int = 8, progress: bool = True, limits: Limits | None = None,
                  extra: ExtraStep | None = None, workers: int | None = None) -> EvaluationResult:
    """`evaluate` on an explicit list of run folders/zips (used by the Codabench adapter)."""
    originals_dir, out_dir = Path(originals_dir), Path(out_dir)
    headers = index_originals(originals_dir, limits or Limits())
    image_ids = sorted(headers)
    paths = _original_paths(originals_dir, image_ids)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir):
        try:
            tidy(out_dir, RESULT_NAMES)
        except ResultsFolderError as exc:
            raise PipelineError(str(exc)) from exc
        return _evaluate_locked(originals_dir, run_paths, out_dir, task, model, headers, image_ids, paths,
                                batch_size=batch_size, progress=progress, limits=limits or Limits(),
                                extra=extra, workers=default_workers() if workers is None else max(0, workers))


def _evaluate_locked(originals_dir: Path, run_paths: Sequence[Path], out_dir: Path, task: TaskConfig,
                     model: BIQAModel, headers: dict[str, Any], image_ids: list[str], paths: dict[str, Path], *,
                     batch_size: int, progress: bool, limits: Limits, extra: ExtraStep | None = None,
                     workers: int = 0) -> EvaluationResult:
    """The evaluation, with one worker pool (`workers` processes) for originals, runs and the report gallery."""
    codec = official_codec(task)  # the task's JPEG, after the steps of a longer preprocess.chain
    if workers > 0:
        try:
            check_picklable(codec, f"the official pre-processing {getattr(codec, 'chain', 'codec')!r}")
        except ValueError as exc:
            raise PipelineError(f"{exc}; run with --workers 0") from exc
    context = _JobScorer(model, max(1, batch_size)) if scores_in_jobs(model) else None
    try:
        with WorkerPool(workers, before_start=_warm_for_workers(codec, context), context=context) as pool:
            return _evaluate_with(originals_dir, run_paths, out_dir, task, model, headers, image_ids, paths, codec,
                                  pool, batch_size=batch_size, progress=progress, limits=limits, extra=extra)
    except BrokenProcessPool as exc:  # a worker died (the out-of-memory killer, a signal): not a Python error
        raise PipelineError(f"a worker process of pp-evaluate ended abruptly ({exc}); most often the system ran out "
                            f"of memory and killed it. Nothing was committed: the results in {out_dir} are as they "
                            "were (the scores already computed are kept in its cache); run again with fewer "
                            "--workers (or --workers 0) or a smaller --batch-size") from exc


def _evaluate_with(originals_dir: Path, run_paths: Sequence[Path], out_dir: Path, task: TaskConfig,
                   model: BIQAModel, headers: dict[str, Any], image_ids: list[str], paths: dict[str, Path],
                   codec: OrganizerCodec | PreprocessedCodec, pool: WorkerPool, *, batch_size: int, progress: bool,
                   limits: Limits, extra: ExtraStep | None = None) -> EvaluationResult:
    info = getattr(model, "info", None)
    weights_seed = _random_weights_seed(model)
    mhash = model_hash(model)
    context = CacheKeyContext(rules=rules_hash(task), model=model_key(model), kit=kit_version())
    counters = _Counters()
    threshold = task.biqa.threshold
    with ScoreCache(out_dir / CACHE_DIR / CACHE_FILE, context) as cache:
        original_shas = {image: file_sha256(p) for image, p in paths.items()}
        with ThreadPoolExecutor(1, thread_name_prefix="validate") as validator:
            # the runs are validated (headers and file hashes: I/O and hashlib, which release the GIL) in a thread
            # while this one warms up what the workers will inherit; joined before the pool forks (a fork while
            # another thread runs could copy a lock it holds into the workers)
            validating = validator.submit(lambda: [_validate_safely(path, headers, limits) for path in run_paths])
            cached_clean = cache.get_many("clean", set(original_shas.values()), rules=False)
            if pool.workers > 0 and len(cached_clean) < len(set(original_shas.values())):
                pool.prepare()  # the originals need scoring, so the pool will start
            validated = validating.result()
        clean = _score_originals(paths, original_shas, model, cache, cached_clean, batch_size, counters, progress,
                                 pool)
        excluded = tuple(i for i in image_ids if clean[i] < threshold)
        for image in excluded:
            log.warning("original %s scores %.2f < threshold %g: not high quality, left out of the accuracy",
                        image, clean[image], threshold)
        eligible = set(image_ids) - set(excluded)
        original_accuracy = metrics.accuracy([clean[i] for i in sorted(eligible)], threshold)

        _flag_name_collisions(validated)
        for v in validated:
            if not v.valid:
                log.warning("run %s is invalid: %d problem(s), first: %s", show_name(v.name), len(v.issues),
                            show_name(str(v.issues[0])))
        jpeg_values, fid_values, failed = _score_runs([v for v in validated if v.valid], image_ids, paths,
                                                      original_shas, model, codec, cache, batch_size, counters,
                                                      progress, pool)
        for v in validated:
            if v.name in failed:
                v.issues.append(failed[v.name])
        valid = [v for v in validated if v.valid]

    rows: list[ImageScore] = []
    results: list[RunResult] = []
    for v in sorted(validated, key=lambda v: v.name):
        if not v.valid:
            results.append(RunResult(run=v.name, status="invalid", error=" | ".join(str(i) for i in v.issues)))
            continue
        run_rows = []
        for image in image_ids:
            ref = v.images[image]
            jv = jpeg_values[ref.sha256]
            fv = fid_values[f"{ref.sha256}:{original_shas[image]}"]
            run_rows.append(ImageScore(run=v.name, image=image, score_clean=clean[image], score=jv["score"],
                                       low_quality=jv["score"] < threshold, psnr=fv["psnr"], ssim=fv["ssim"],
                                       jpeg_sha256=jv["jpeg_sha256"]))
        rows.extend(run_rows)
        results.append(run_result(v.name, run_rows, eligible, original_accuracy, task))

    warnings = lookalike_warnings(r.run for r in results)
    results = [dataclasses.replace(r, warning=warnings[r.run]) if r.run in warnings else r for r in results]
    for name in sorted(warnings):
        log.warning("run %s: %s", show_name(name), warnings[name])
    scored_names = [r.run for r in results if r.status == "scored"]
    by_run: dict[str, dict[str, float]] = {n: {} for n in scored_names}
    for r in rows:
        by_run[r.run][r.image] = r.score
    variances = score_variances(by_run, sorted(eligible)) if scored_names else {}
    selection = tuple(select_images(variances, task.selection.images))
    qualified = [r.run for r in results if r.qualified]
    picks = task.jury.for_candidates(len(qualified))
    jury_note = task.jury.shrink_note(len(qualified))
    if jury_note and qualified:
        log.warning("jury: %s", jury_note)

    result = EvaluationResult(
        out_dir=out_dir, runs=tuple(results), scores=tuple(rows), original_scores=clean,
        excluded_originals=excluded, original_accuracy=original_accuracy, selection=selection, picks=picks,
        jury_candidates=len(qualified), threshold=threshold, max_accuracy=task.gate.max_accuracy,
        cache=CacheStats(hits=counters.hits, computed=counters.computed, model_batches=counters.batches),
        jury_note=jury_note,
    )
    meta = {
        "rules": task.to_dict(), "task_source": task.source,
        "model": {"name": getattr(getattr(model, "info", None), "name", type(model).__name__),
                  "class": f"{type(model).__module__}.{type(model).__qualname__}", "sha256": mhash,
                  "weights_sha256": getattr(getattr(model, "info", None), "weights_sha256", None),
                  "needs_weights": bool(getattr(getattr(model, "info", None), "needs_weights", False)),
                  "random_weights_seed": weights_seed},
        "codec": {"quality": codec.quality, "subsampling": codec.subsampling, "libjpeg": codec.libjpeg},
        VERSIONS_KEY: library_versions(),
        "originals": {"folder": str(originals_dir), "count": len(image_ids), "accuracy": original_accuracy,
                      "excluded": [{"image": i, "score_clean": clean[i]} for i in excluded]},
        "jury": {"most": picks.most, "least": picks.least, "requested_most": task.jury.most,
                 "requested_least": task.jury.least, "candidates_per_image": len(qualified),
                 "note": jury_note},
        "cache": asdict(result.cache),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if weights_seed is not None:
        meta["warning"] = info.random_weights_note()
    valid_by_name = {v.name: v for v in valid}
    _write_results(out_dir, result, meta, task, codec, valid_by_name, paths, pool, extra)
    return result


def _write_results(out_dir: Path, result: EvaluationResult, meta: dict[str, Any], task: TaskConfig,
                   codec: OrganizerCodec | PreprocessedCodec, runs: dict[str, ValidatedRun],
                   original_paths: dict[str, Path], pool: WorkerPool, extra: ExtraStep | None = None) -> None:
    staging = new_generation(out_dir)
    try:
        seed = meta["model"]["random_weights_seed"]
        write_csv(staging / RUNS_CSV, RUNS_COLUMNS,
                  ({**asdict(r), "random_weights_seed": seed} for r in result.runs))
        write_csv(staging / SCORES_CSV, SCORES_COLUMNS, (asdict(r) for r in result.scores))
        write_csv(staging / SELECTION_CSV, SELECTION_COLUMNS, (asdict(s) for s in result.selection))
        write_task_json(staging / TASK_JSON, meta)
        selected = [s.image for s in result.selection]
        qualified = [r.run for r in result.runs if r.qualified]
        sha_of = {(r.run, r.image): r.jpeg_sha256 for r in result.scores}
        jury_images = selected if qualified else []
        items = [JuryItem(run=run, image=image, jpeg_sha256=sha_of[(run, image)])
                 for image in jury_images for run in qualified]
        jury_pairs = {(item.run, item.image) for item in items}
        jury_jpegs = JpegMemo()  # the jury's JPEGs (up to a byte bound), made by the gallery's jobs
        thumbs: dict[str, bytes] = {}

        def materials(plan: Sequence[tuple[str, Sequence[str]]]) -> Iterator[tuple[OriginalMaterial, dict]]:
            jobs = ((image, (original_paths[image], [(run, runs[run].images[image], (run, image) in jury_pairs)
                                                     for run in shown], codec)) for image, shown in plan)
            for image, (base, made, jpegs) in pool.run(_gallery_material, jobs,
                                                       inline=sum(len(shown) for _, shown in plan) < 8):
                for run, data in jpegs.items():
                    jury_jpegs.keep((run, image), data)
                if image in selected and image not in thumbs:
                    thumbs[image] = _thumbnail(base.pixels)
                yield base, made

        gallery = gallery_html(result, materials=materials)
        write_jury_package(
            staging / JURY_DIR, jury_images, items,
            jpeg_of=lambda item: (jury_jpegs.pop((item.run, item.image))
                                  or codec.compress(runs[item.run].images[item.image].load())),
            picks=result.picks, note=result.jury_note,
            original_of=lambda image: load_rgb(original_paths[image]),
            run_names=qualified,
        )
        for image in selected:
            if image not in thumbs:
                thumbs[image] = _thumbnail(load_rgb(original_paths[image]))
        added = extra(staging, result, meta, runs, original_paths) if extra is not None else ExtraOutputs()
        write_report(staging / REPORT_HTML, result, meta, {i: thumbs[i] for i in selected}, gallery,
                     sections=added.sections)
        commit_generation(staging, out_dir, RESULT_NAMES + added.names)
    except BaseException as exc:
        committed = committed_generation(out_dir)
        if committed is None or committed.name != staging.name:  # not switched to: drop it (else it IS the results)
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ResultsFolderError):
            raise PipelineError(str(exc)) from exc
        raise
    log.info("results written to %s", out_dir)

