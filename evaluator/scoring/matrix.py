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

Memory: images are streamed as in the pipeline: one original id at a time, each run's version decoded once, each
defense applied once and its output queued for every model; at most `batch_size` images per model and image size
wait for the model, and the matrix of images is never held.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluator.biqa.base import BIQAModel
from evaluator.codec import OrganizerCodec
from evaluator.common.device import model_device
from evaluator.common.imageio import load_rgb, to_batch
from evaluator.common.text import show_name
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Scorer:
    """Queues images per size for one model, scores `batch_size` at a time, and stores each score in the cache."""

    def __init__(self, name: str, model: BIQAModel, cache: ScoreCache, batch_size: int,
                 values: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.name, self.model, self.cache, self.batch_size, self.values = name, model, cache, max(1, batch_size), values
        self.device = model_device(model)
        self.pending: dict[tuple[int, ...], list[tuple[str, str, dict[str, Any], np.ndarray]]] = {}
        self.computed = 0
        self.failed: dict[tuple[str, str], str] = {}  # (kind, content) -> why the model could not score it

    def add(self, kind: str, content: str, extra: dict[str, Any], rgb: np.ndarray) -> None:
        queue = self.pending.setdefault(rgb.shape, [])
        queue.append((kind, content, extra, rgb))
        if len(queue) >= self.batch_size:
            self._flush(rgb.shape)

    def _flush(self, shape: tuple[int, ...]) -> None:
        self._score(self.pending.pop(shape, []))

    def _score(self, queue: list[tuple[str, str, dict[str, Any], np.ndarray]]) -> None:
        if not queue:
            return
        try:
            with torch.inference_mode():
                y = self.model(to_batch([q[3] for q in queue], self.device))
            scores = [float(v) for v in y.detach().to("cpu", torch.float64).reshape(-1)]
            if len(scores) != len(queue) or not all(math.isfinite(v) for v in scores):
                raise ValueError(f"returned {scores!r} for a batch of {len(queue)} images, not one finite score each")
        except Exception as exc:  # noqa: BLE001 - e.g. an image too small for the model: those cells only
            if len(queue) > 1:  # one at a time, so that only the images the model refuses fail
                for item in queue:
                    self._score([item])
                return
            for kind, content, _, rgb in queue:
                self.failed[(kind, content)] = (f"{self.name} cannot score a {rgb.shape[1]}x{rgb.shape[0]} image "
                                                f"({type(exc).__name__}: {exc})")
            return
        by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for (kind, content, extra, _), score in zip(queue, scores):
            by_kind.setdefault(kind, {})[content] = {"score": score, **extra}
        for kind, fresh in by_kind.items():
            self.cache.put_many(kind, fresh, rules=kind != "clean")
            self.values.update({(kind, c): v for c, v in fresh.items()})
        self.computed += len(queue)

    def flush(self) -> None:
        for shape in list(self.pending):
            self._flush(shape)


def survival_matrix(runs: Mapping[str, Any], image_ids: Sequence[str], original_paths: Mapping[str, Path],
                    models: Mapping[str, BIQAModel], defenses: Sequence[str], task: TaskConfig, cache_path: Path, *,
                    batch_size: int = 8, notes: Sequence[str] = (),
                    progress: Callable[[str], None] | None = None) -> MatrixResult:
    """Score every run of `runs` (name -> `evaluator.intake.runs.ValidatedRun`, valid ones) under every defense
    (chain names) and every model of `models` (name -> model); see the module docstring for the cell formulas."""
    chains: dict[str, Chain] = {d: parse_chain(d, "--defenses") for d in defenses}
    official = parse_chain(task.preprocess.chain, "preprocess.chain").name
    codec = OrganizerCodec.from_task(task)
    official_pre = official_codec(task)
    threshold = task.biqa.threshold
    original_shas = {image: _sha256(original_paths[image]) for image in image_ids}
    kind_of = {d: OFFICIAL_KIND if d == official else defense_kind(c) for d, c in chains.items()}
    names = sorted(runs)
    sha = {(r, i): runs[r].images[i].sha256 for r in names for i in image_ids}
    sha.update({(ORIGINALS, i): original_shas[i] for i in image_ids})  # the baseline: the originals, unattacked

    caches: dict[str, ScoreCache] = {}
    values: dict[str, dict[tuple[str, str], dict[str, Any]]] = {m: {} for m in models}
    scorers: dict[str, _Scorer] = {}
    reused = 0
    errors: dict[tuple[str, str], str] = {}  # (submitted sha, defense) -> first error
    try:
        for m, model in models.items():
            caches[m] = ScoreCache(cache_path, cache_context(task, m, model))
            scorers[m] = _Scorer(m, model, caches[m], batch_size, values[m])
            clean = caches[m].get_many("clean", set(original_shas.values()), rules=False)
            values[m].update({("clean", c): v for c, v in clean.items()})
            for d, kind in kind_of.items():
                found = caches[m].get_many(kind, set(sha.values()))
                values[m].update({(kind, c): v for c, v in found.items()})
            reused += sum(1 for k in values[m] if k[0] != "clean")

        # clean scores of the originals (each model's high-quality set)
        for image in image_ids:
            todo = [m for m in models if ("clean", original_shas[image]) not in values[m]]
            if todo:
                rgb = load_rgb(original_paths[image])
                for m in todo:
                    scorers[m].add("clean", original_shas[image], {}, rgb)
        for s in scorers.values():
            s.flush()

        # every run's image under every defense, streamed one original id at a time
        for n, image in enumerate(image_ids):
            if progress is not None:
                progress(f"matrix: image {n + 1}/{len(image_ids)} ({image})")
            done: set[str] = set()
            for r in [*names, ORIGINALS]:
                content = sha[(r, image)]
                if content in done:
                    continue
                done.add(content)
                need = {d: [m for m in models if (kind_of[d], content) not in values[m]] for d in chains}
                need = {d: ms for d, ms in need.items() if ms and (content, d) not in errors}
                if not need:
                    continue
                rgb = load_rgb(original_paths[image]) if r == ORIGINALS else runs[r].images[image].load()
                for d, ms in need.items():
                    extra: dict[str, Any] = {}
                    try:
                        if d == official:  # the pipeline's exact path, and its jpeg_sha256 for the cache entry
                            data = official_pre.compress(rgb)
                            extra = {"jpeg_sha256": hashlib.sha256(data).hexdigest()}
                            out = official_pre.decompress(data)
                        else:
                            out = chains[d](rgb, codec)
                    except Exception as exc:  # noqa: BLE001 - one failing defense marks its cell, the rest go on
                        errors[(content, d)] = f"{d} failed on {image} ({type(exc).__name__}: {exc})"
                        log.warning("run %s: %s", show_name(r or "(originals)"), show_name(errors[(content, d)]))
                        continue
                    for m in ms:
                        scorers[m].add(kind_of[d], content, extra, out)
        for s in scorers.values():
            s.flush()
    finally:
        for c in caches.values():
            c.close()

    cells: list[Cell] = []
    clean_failed = {m: next((f"original {i}: {scorers[m].failed[('clean', c)]}" for i, c in original_shas.items()
                             if ("clean", c) in scorers[m].failed), None) for m in models}
    eligible_of = {m: [i for i in image_ids if values[m][("clean", original_shas[i])]["score"] >= threshold]
                   for m in models if clean_failed[m] is None}
    for r in [*names, ORIGINALS]:
        for d in chains:
            for m in models:
                failed = clean_failed[m] or next(
                    (errors.get((sha[(r, i)], d)) or scorers[m].failed.get((kind_of[d], sha[(r, i)]))
                     for i in image_ids
                     if (sha[(r, i)], d) in errors or (kind_of[d], sha[(r, i)]) in scorers[m].failed), None)
                if failed is not None:
                    cells.append(Cell(r, d, m, error=failed))
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
        notes=tuple(notes), computed=sum(s.computed for s in scorers.values()), reused=reused,
    )


def matrix_rows(result: MatrixResult) -> list[dict[str, Any]]:
    """The rows of matrix.csv (dicts keyed by `MATRIX_COLUMNS`); a cell with an error has `qualified` empty (not
    'false': it says nothing about the gate)."""
    return [{**dataclasses.asdict(c), **({"qualified": None} if c.error else {})} for c in result.cells]


__all__ = ["Cell", "DefenseError", "MatrixResult", "cache_context", "defense_kind", "matrix_rows", "parse_defenses", "survival_matrix"]
