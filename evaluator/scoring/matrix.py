"""The survival matrix (`pp-evaluate --matrix`): every scored run under every defense and every embedded BIQA.

One cell per (run r, defense d, BIQA m), with d a name or chain of `evaluator.defenses` ('jpeg75', 'resize75+jpeg90'):
    images    the originals m calls high quality (clean score >= threshold: the task rules define the test set as
              high quality, so a model's own low-quality originals are left out, as `evaluator.pipeline` does)
    score_i   m(d(submitted_i)): the run's submitted image, pre-processed by d, scored by m
    n_images  |images|;  accuracy = mean(score_i >= threshold) (`metrics.accuracy`);  mean_score = mean(score_i)
    qualified accuracy < gate.max_accuracy (`metrics.qualifies`)
    baseline  the same cell for the originals themselves (run ''; `MatrixResult.baseline`, not in matrix.csv): a
              defense under which the unattacked originals already qualify says nothing about a camouflage
    error     why the cell has no numbers (a defense that failed on an image: that cell only, the rest go on)
The cell (the task's official chain `preprocess.chain`, the task's model) IS the official evaluation: its scores
are read from the entries the pipeline cached for runs.csv (same kind "jpeg", same key), so it equals runs.csv.

Cache: `OUT/.cache/scores.sqlite` (`evaluator.scoring.score_cache`), one key context per model (the task's JPEG
rules with `biqa.model = m`, m's model hash, the kit version): kind "jpeg" for the official chain (the pipeline's
own entries: `pp-evaluate --biqa m` reuses what the matrix scored and the other way round), kind "defense:<d>:<h>"
for the others (`defense_kind`: h hashes the steps' parameters and the Pillow/scipy/numpy/jpeglib versions), keyed
by the sha256 of the submitted file; clean scores of originals under kind "clean". Adding a run,
a defense or a model scores only the new cells.

Work: one job per (original id, distinct submitted content), run in `workers` processes
(`evaluator.common.worker_pool.WorkerPool`, forked after the models are built, so they are inherited, never
pickled; in this process with workers=0 or where processes cannot be forked): the job decodes the image once,
applies each defense it still needs once and scores each output with each model that still needs it, and returns
the scores (and errors); this process only stores them in the cache and builds the cells. Batches are formed within
one job (per model and image size, in the order of the defenses, `batch_size` at a time), so the numbers do not
depend on the number of workers. A worker runs 1 torch thread: a model not registered `thread_independent` is
scored there only when this process also runs 1 (its cache key holds the thread count), else here.

Memory: images are streamed as in the pipeline: each job holds one decoded image and at most `batch_size` defended
versions per model and image size; a few jobs per worker are in flight, and the matrix of images is never held.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluator.biqa.base import BIQAModel
from evaluator.codec import OrganizerCodec
from evaluator.common.device import model_device
from evaluator.common.hashing import file_sha256
from evaluator.common.imageio import load_rgb, to_batch
from evaluator.common.text import show_name
from evaluator.common.worker_pool import WorkerPool, default_workers, job_context
from evaluator.common.versions import kit_version
from evaluator.config import TaskConfig
from evaluator.defenses import DefenseError, Chain, official_codec, parse_chain
from evaluator.scoring import metrics
from evaluator.scoring.score_cache import CacheKeyContext, ScoreCache, model_key, rules_hash

log = logging.getLogger(__name__)

OFFICIAL_KIND = "jpeg"  # the pipeline's kind for the official pre-processing (`evaluator.pipeline._score_runs`)
ORIGINALS = ""  # the run name of the baseline cells (the originals, unattacked); no run is named ""


@dataclass(frozen=True)
class Cell:
    """One row of matrix.csv (`evaluator.contracts.results.MATRIX_COLUMNS`)."""

    run: str
    defense: str
    biqa: str
    n_images: int = 0
    accuracy: float = math.nan
    mean_score: float = math.nan
    qualified: bool = False
    error: str = ""


@dataclass(frozen=True)
class MatrixResult:
    """The cells (runs sorted, then defenses and models in the order asked), and what the report needs around them."""

    cells: tuple[Cell, ...]
    runs: tuple[str, ...]
    defenses: tuple[str, ...]
    models: tuple[str, ...]
    official_defense: str
    task_model: str
    max_accuracy: float
    threshold: float
    targets: Mapping[str, str] = field(default_factory=dict)  # run -> the BIQA its run.json says it attacked
    notes: tuple[str, ...] = ()  # models skipped (weights needed), ...
    computed: int = 0  # model scores computed by this call (cache misses)
    #: the originals themselves (run ''), unattacked, under every defense and model: a defense under which they
    #: already qualify measures the pre-processing, not a camouflage (report only; not in matrix.csv)
    baseline: tuple[Cell, ...] = ()
    reused: int = 0  # model scores read from the cache

    def cell(self, run: str, defense: str, biqa: str) -> Cell:
        for c in self.cells:
            if (c.run, c.defense, c.biqa) == (run, defense, biqa):
                return c
        raise KeyError((run, defense, biqa))

    def base(self, defense: str, biqa: str) -> Cell | None:
        """The baseline cell (the originals, unattacked) of `defense` and `biqa`, None when not computed."""
        return next((c for c in self.baseline if (c.defense, c.biqa) == (defense, biqa)), None)


def parse_defenses(text: str | None) -> list[str]:
    """`--defenses a,b` -> canonical chain names (every catalogue name when empty); `DefenseError` lists the known."""
    from evaluator.defenses import names

    if text is None or not text.strip():
        return names()
    found: list[str] = []
    for part in text.split(","):
        name = parse_chain(part.strip(), "--defenses").name
        if name not in found:
            found.append(name)
    return found


def cache_context(task: TaskConfig, model_name: str, model: BIQAModel) -> CacheKeyContext:
    """The pipeline's cache key context for `model` under `task` (as `pp-evaluate --biqa model_name` keys it)."""
    scoped = dataclasses.replace(task, biqa=dataclasses.replace(task.biqa, model=model_name))
    return CacheKeyContext(rules=rules_hash(scoped), model=model_key(model), kit=kit_version())


#: the libraries a defense's output depends on (WebP and resize: Pillow; blur, median: scipy; bits5: numpy;
#: the JPEG entries: jpeglib), part of every defense cell's cache key
DEFENSE_LIBRARIES = ("pillow", "scipy", "numpy", "jpeglib")


def defense_kind(chain: Chain) -> str:
    """The cache kind of a non-official defense cell: 'defense:<name>:<h>', h = sha256 (16 hex) of every step's
    name, parameters, output size rule and summary, and the versions of `DEFENSE_LIBRARIES`; so a defense changed
    under the same name (same kit version) or a new Pillow/scipy never serves old numbers."""
    import importlib.metadata
    import json

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    steps = [[d.name, {k: d.params[k] for k in sorted(d.params)}, d.long_side, d.summary] for d in chain.defenses]
    text = json.dumps({"steps": steps, "libraries": {n: version(n) for n in DEFENSE_LIBRARIES}}, sort_keys=True,
                      default=str)
    return f"defense:{chain.name}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class _Scorer:
    """Queues images per size for one model and scores `batch_size` at a time; keeps each score (with the entry's
    extra fields) in `scores`, and in `failed` why the model refused an image. An image comes as `to_batch([rgb])`
    on the model's device (made once per image for every model on that device; a batch is their concatenation,
    a new tensor, equal to `to_batch` of the batch's images)."""

    def __init__(self, name: str, model: BIQAModel, batch_size: int) -> None:
        self.name, self.model, self.batch_size = name, model, max(1, batch_size)
        self.device = model_device(model)
        self.pending: dict[tuple[int, ...], list[tuple[str, dict[str, Any], torch.Tensor]]] = {}
        self.scores: dict[str, dict[str, Any]] = {}  # kind -> entry ({"score": s, **extra})
        self.failed: dict[str, str] = {}  # kind -> why the model could not score it

    def add(self, kind: str, extra: dict[str, Any], x: torch.Tensor) -> None:
        queue = self.pending.setdefault(tuple(x.shape), [])
        queue.append((kind, extra, x))
        if len(queue) >= self.batch_size:
            self._score(self.pending.pop(tuple(x.shape)))

    def _score(self, queue: list[tuple[str, dict[str, Any], torch.Tensor]]) -> None:
        if not queue:
            return
        try:
            with torch.inference_mode():
                y = self.model(torch.cat([q[2] for q in queue]))
            scores = [float(v) for v in y.detach().to("cpu", torch.float64).reshape(-1)]
            if len(scores) != len(queue) or not all(math.isfinite(v) for v in scores):
                raise ValueError(f"returned {scores!r} for a batch of {len(queue)} images, not one finite score each")
        except Exception as exc:  # noqa: BLE001 - e.g. an image too small for the model: those cells only
            if len(queue) > 1:  # one at a time, so that only the images the model refuses fail
                for item in queue:
                    self._score([item])
                return
            for kind, _, x in queue:
                self.failed[kind] = (f"{self.name} cannot score a {x.shape[3]}x{x.shape[2]} image "
                                     f"({type(exc).__name__}: {exc})")
            return
        for (kind, extra, _), score in zip(queue, scores):
            self.scores[kind] = {"score": score, **extra}

    def flush(self) -> None:
        for shape in list(self.pending):  # in the order the sizes first came: the batches are fixed by the job
            self._score(self.pending.pop(shape))


@dataclass(frozen=True)
class _Context:
    """What every job of one `survival_matrix` call shares: its worker pool's context (`job_context()`), which
    forked workers inherit (the models are not pickled into jobs)."""

    models: Mapping[str, BIQAModel]
    chains: Mapping[str, Chain]
    official: str
    codec: OrganizerCodec
    official_pre: Any  # `evaluator.defenses.official_codec(task)`: the pipeline's exact official path
    batch_size: int


@dataclass
class _JobResult:
    """One job's numbers: entries[model][kind] = {"score": s, **extra}; failed[model][kind] = why that score is
    missing (the model refused the image, or the image could not be decoded); errors[defense] = why the defense
    failed (its cells, every model)."""

    entries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    unreadable: str = ""  # why the image could not be decoded (then every score of the job is in `failed`)


#: One step of a job's plan: (cache kind, defense name or None for the image itself (kind "clean"), model names).
Plan = tuple[tuple[str, "str | None", tuple[str, ...]], ...]


def _matrix_job(source: Any, image: str, plan: Plan) -> _JobResult:
    """Decode one submitted image (or original: `source` a Path) once, apply each defense of `plan` once (in plan
    order) and score its output with each model that needs it; batches are formed within the job only (per model
    and image size, in plan order, `batch_size` at a time), so no number depends on the number of workers. Any
    exception of the decoder, a defense or a model is returned as that cell's error, never raised."""
    ctx: _Context = job_context()
    result = _JobResult()
    try:
        rgb = load_rgb(source) if isinstance(source, Path) else source.load()
    except Exception as exc:  # noqa: BLE001 - a bad image marks the cells it was needed for, the rest go on
        result.unreadable = f"{image} could not be decoded ({type(exc).__name__}: {exc})"
        for kind, _, ms in plan:
            for m in ms:
                result.failed.setdefault(m, {})[kind] = result.unreadable
        return result
    scorers = {m: _Scorer(m, ctx.models[m], ctx.batch_size) for m in sorted({m for *_, ms in plan for m in ms})}
    for kind, d, ms in plan:
        extra: dict[str, Any] = {}
        if d is None:
            out = rgb
        else:
            try:
                if d == ctx.official:  # the pipeline's exact path, and its jpeg_sha256 for the cache entry
                    data = ctx.official_pre.compress(rgb)
                    extra = {"jpeg_sha256": hashlib.sha256(data).hexdigest()}
                    out = ctx.official_pre.decompress(data)
                else:
                    out = ctx.chains[d](rgb, ctx.codec)
            except Exception as exc:  # noqa: BLE001 - one failing defense marks its cells, the rest go on
                result.errors[d] = f"{d} failed on {image} ({type(exc).__name__}: {exc})"
                continue
        tensors: dict[torch.device, torch.Tensor] = {}  # the image as a model input, once per device
        for m in ms:
            device = scorers[m].device
            if device not in tensors:
                tensors[device] = to_batch([out], device)
            scorers[m].add(kind, extra, tensors[device])
        del out, tensors
    for m, s in scorers.items():
        s.flush()
        result.entries[m], result.failed[m] = s.scores, s.failed
    return result


def _warm(ctx: _Context, models: Sequence[str]) -> None:
    """Once in this process before the pool forks, so that no worker pays it: each pooled model's first call
    (numba kernels loaded, first-use set-ups) and each defense's (lazy imports, codec probe), on a small image."""
    rgb = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    for m in models:
        try:
            with torch.inference_mode():
                ctx.models[m](to_batch([rgb], model_device(ctx.models[m])))
        except Exception:  # noqa: BLE001 - a warm-up only: the jobs report whatever really fails
            pass
    for d, chain in ctx.chains.items():
        try:
            if d == ctx.official:
                ctx.official_pre.decompress(ctx.official_pre.compress(rgb))
            else:
                chain(rgb, ctx.codec)
        except Exception:  # noqa: BLE001 - as above
            pass


def _runs_in_workers(model: BIQAModel) -> bool:
    """Whether a worker (1 torch thread, CPU, forked) computes exactly the scores this process would: a CPU model
    registered `thread_independent`, or any CPU model while this process also runs 1 torch thread (the cache keys
    other models by the thread count, `score_cache.model_key`)."""
    if model_device(model).type != "cpu":
        return False
    return bool(getattr(getattr(model, "info", None), "thread_independent", False)) or torch.get_num_threads() == 1


def survival_matrix(runs: Mapping[str, Any], image_ids: Sequence[str], original_paths: Mapping[str, Path],
                    models: Mapping[str, BIQAModel], defenses: Sequence[str], task: TaskConfig, cache_path: Path, *,
                    batch_size: int = 8, notes: Sequence[str] = (),
                    progress: Callable[[str], None] | None = None, workers: int | None = None) -> MatrixResult:
    """Score every run of `runs` (name -> `evaluator.intake.runs.ValidatedRun`, valid ones) under every defense
    (chain names) and every model of `models` (name -> model); see the module docstring for the cell formulas.
    `workers`: processes that decode, apply the defenses and score (None: `default_workers()`; 0: all in this
    process; also 0 where processes cannot be forked); the numbers do not depend on it."""
    chains: dict[str, Chain] = {d: parse_chain(d, "--defenses") for d in defenses}
    official = parse_chain(task.preprocess.chain, "preprocess.chain").name
    codec = OrganizerCodec.from_task(task)
    threshold = task.biqa.threshold
    original_shas = {image: file_sha256(original_paths[image]) for image in image_ids}
    kind_of = {d: OFFICIAL_KIND if d == official else defense_kind(c) for d, c in chains.items()}
    names = sorted(runs)
    sha = {(r, i): runs[r].images[i].sha256 for r in names for i in image_ids}
    sha.update({(ORIGINALS, i): original_shas[i] for i in image_ids})  # the baseline: the originals, unattacked
    workers = default_workers() if workers is None else max(0, int(workers))
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 0  # the models reach the workers by fork only (pickling them per job would cost more than it saves)

    caches: dict[str, ScoreCache] = {}
    values: dict[str, dict[tuple[str, str], dict[str, Any]]] = {m: {} for m in models}
    failed: dict[str, dict[tuple[str, str], str]] = {m: {} for m in models}  # (kind, content) -> why m refused it
    errors: dict[tuple[str, str], str] = {}  # (submitted sha, defense) -> first error
    reused = computed = 0
    context = _Context(models=dict(models), chains=chains, official=official, codec=codec,
                       official_pre=official_codec(task), batch_size=batch_size)
    try:
        for m, model in models.items():
            caches[m] = ScoreCache(cache_path, cache_context(task, m, model))
            clean = caches[m].get_many("clean", set(original_shas.values()), rules=False)
            values[m].update({("clean", c): v for c, v in clean.items()})
            for d, kind in kind_of.items():
                found = caches[m].get_many(kind, set(sha.values()))
                values[m].update({(kind, c): v for c, v in found.items()})
            reused += sum(1 for k in values[m] if k[0] != "clean")

        def jobs(chosen: Sequence[str]):
            """One job per (original id, distinct submitted content): what `chosen` models still need of it."""
            for n, image in enumerate(image_ids):
                if progress is not None:
                    progress(f"matrix: image {n + 1}/{len(image_ids)} ({image})")
                done: set[str] = set()
                for r in [*names, ORIGINALS]:
                    content = sha[(r, image)]
                    if content in done:
                        continue
                    done.add(content)
                    steps = [("clean", None, tuple(m for m in chosen if ("clean", content) not in values[m]))
                             ] if content == original_shas[image] else []
                    steps += [(kind_of[d], d, tuple(m for m in chosen if (kind_of[d], content) not in values[m]))
                              for d in chains if (content, d) not in errors]
                    plan = tuple(s for s in steps if s[2])
                    if plan:
                        source = original_paths[image] if r == ORIGINALS else runs[r].images[image]
                        yield (r, image, content), (source, image, plan)

        unsaved: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # (model, kind) -> content -> entry

        def save() -> None:
            """Store the scores computed since the last call: one transaction per (model, kind), once per image id."""
            for (m, kind), fresh in unsaved.items():
                caches[m].put_many(kind, fresh, rules=kind != "clean")
            unsaved.clear()

        pooled = [m for m, model in models.items() if workers > 0 and _runs_in_workers(model)]
        local = [m for m in models if m not in pooled]  # scored in this process (its device and thread count)
        with WorkerPool(workers, before_start=lambda: _warm(context, pooled), context=context) as pool:
            for chosen, inline in ((pooled, False), (local, True)):
                if not chosen:
                    continue
                last = None
                for (r, image, content), job in pool.run(_matrix_job, jobs(chosen), inline=inline):
                    if image != last:
                        save()
                        last = image
                    for d, why in job.errors.items():
                        errors.setdefault((content, d), why)
                        log.warning("run %s: %s", show_name(r or "(originals)"), show_name(why))
                    for m, entries in job.entries.items():
                        for kind, entry in entries.items():
                            unsaved.setdefault((m, kind), {})[content] = entry
                            values[m][(kind, content)] = entry
                        computed += len(entries)
                    for m, refused in job.failed.items():
                        failed[m].update({(kind, content): why for kind, why in refused.items()})
                    if job.unreadable:
                        log.warning("run %s: %s", show_name(r or "(originals)"), show_name(job.unreadable))
                save()
    finally:
        for c in caches.values():
            c.close()

    cells: list[Cell] = []
    clean_failed = {m: next((f"original {i}: {failed[m][('clean', c)]}" for i, c in original_shas.items()
                             if ("clean", c) in failed[m]), None) for m in models}
    eligible_of = {m: [i for i in image_ids if values[m][("clean", original_shas[i])]["score"] >= threshold]
                   for m in models if clean_failed[m] is None}
    for r in [*names, ORIGINALS]:
        for d in chains:
            for m in models:
                why = clean_failed[m] or next(
                    (errors.get((sha[(r, i)], d)) or failed[m].get((kind_of[d], sha[(r, i)]))
                     for i in image_ids
                     if (sha[(r, i)], d) in errors or (kind_of[d], sha[(r, i)]) in failed[m]), None)
                if why is not None:
                    cells.append(Cell(r, d, m, error=why))
                    continue
                eligible = eligible_of[m]
                if not eligible:
                    cells.append(Cell(r, d, m, error=f"no original scores >= {threshold:g} with {m}"))
                    continue
                scores = [values[m][(kind_of[d], sha[(r, i)])]["score"] for i in eligible]
                acc = metrics.accuracy(scores, threshold)
                cells.append(Cell(r, d, m, n_images=len(scores), accuracy=acc, mean_score=float(np.mean(scores)),
                                  qualified=metrics.qualifies(acc, task.gate.max_accuracy)))
    targets = {r: str(runs[r].meta.get("biqa", "")) for r in names if isinstance(getattr(runs[r], "meta", None), dict)}
    return MatrixResult(
        cells=tuple(c for c in cells if c.run != ORIGINALS), baseline=tuple(c for c in cells if c.run == ORIGINALS),
        runs=tuple(names), defenses=tuple(chains), models=tuple(models), official_defense=official,
        task_model=task.biqa.model, max_accuracy=task.gate.max_accuracy, threshold=threshold, targets=targets,
        notes=tuple(notes), computed=computed, reused=reused,
    )


def matrix_rows(result: MatrixResult) -> list[dict[str, Any]]:
    """The rows of matrix.csv (dicts keyed by `MATRIX_COLUMNS`); a cell with an error has `qualified` empty (not
    'false': it says nothing about the gate)."""
    return [{**dataclasses.asdict(c), **({"qualified": None} if c.error else {})} for c in result.cells]


__all__ = ["Cell", "DefenseError", "MatrixResult", "cache_context", "defense_kind", "matrix_rows", "parse_defenses", "survival_matrix"]
