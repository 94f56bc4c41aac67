"""Shared machinery of the result tables (`attack_table.py`, `reproduction.py`): run the real CLIs, read their CSVs.

A campaign folder (`--out`) holds
    originals/              the first N demo images (copied; the evaluator scores exactly these)
    runs/<run>/             one `pp-attack` run folder per attack setting (`runs/.pp-attack/<run>/log.csv` its log)
    results-<model>/        `pp-evaluate --biqa <model>` over all runs of runs/
    walltimes.json          wall seconds of every subprocess, kept across re-runs

Every number the tables print comes from three files the CLIs write:
    log.csv    (per image: score_before, score_after, score_jpeg, psnr, seconds)  -> P_PNG, P_JPEG, seconds/image
    runs.csv   (per run: accuracy, qualified, psnr, ssim, the MSU scores)           -> accuracy after JPEG-90, ...
    scores.csv (per run and image: score_clean, score)                             -> cross-checks
Re-running with the same `--out` resumes: `pp-attack` skips images that already have their file and log row.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger("benchmarks.campaign")

ROOT = Path(__file__).resolve().parents[1]
METHOD_LINE = re.compile(r"^([a-z0-9][a-z0-9-]*): ")


class CampaignError(RuntimeError):
    """A CLI call of the campaign failed or wrote something unreadable; the message names the call and the file."""


# -- attack settings ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackSpec:
    """One `pp-attack` call: run folder name, method, `--set key=value` pairs and an optional `--target`."""

    run: str
    method: str
    settings: tuple[tuple[str, str], ...] = ()
    target: float | None = None
    note: str = ""

    def argv(self, originals: Path, runs_dir: Path) -> list[str]:
        cmd = ["pp-attack", self.method, "--originals", str(originals), "--out", str(runs_dir / self.run),
               "--quiet"]
        if self.target is not None:
            cmd += ["--target", f"{self.target:g}"]
        for key, value in self.settings:
            cmd += ["--set", f"{key}={value}"]
        return cmd

    def settings_text(self) -> str:
        parts = [f"{k}={v}" for k, v in self.settings]
        if self.target is not None:
            parts.insert(0, f"target={self.target:g}")
        return ", ".join(parts) if parts else "defaults"

    @property
    def threshold_target(self) -> float | None:
        """The score s_a that P_PNG / P_JPEG are measured against when it is not the task threshold."""
        return self.target


def task_threshold() -> float:
    """The threshold the CLIs use when called without --task (the task rules' default, the one source)."""
    from evaluator.config import load_task

    return float(load_task(None).biqa.threshold)


HEAVY = ("pgd-dct", "pgd-l2", "cw-sensitivity", "madc", "uap-generative", "uap-optimized", "uap-cumulative")


def heavy_first(specs: Iterable[AttackSpec]) -> list[AttackSpec]:
    """Slowest methods first, so parallel calls finish together (order of the tables is unaffected)."""
    return sorted(specs, key=lambda s: HEAVY.index(s.method) if s.method in HEAVY else len(HEAVY))


def list_methods(env: dict[str, str] | None = None) -> list[str]:
    """Method names, in the order `pp-attack --list` prints them."""
    out = subprocess.run(["pp-attack", "--list"], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise CampaignError(f"`pp-attack --list` failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    names = [m.group(1) for line in out.stdout.splitlines() if (m := METHOD_LINE.match(line))]
    if not names:
        raise CampaignError("`pp-attack --list` printed no method lines ('name: summary'); check submission/cli.py")
    return names


def select_methods(env: dict[str, str] | None, spec: str | None) -> list[str]:
    """The `--methods a,b` subset of `pp-attack --list` (all of it when spec is empty); unknown names exit."""
    methods = list_methods(env)
    if not spec:
        return methods
    wanted = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in methods]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; `pp-attack --list` has {methods}")
    return wanted


# -- running the CLIs --------------------------------------------------------------------------------------------
def cli_env(threads: int) -> dict[str, str]:
    """The environment of every CLI call: the venv's scripts on PATH, `threads` intra-op threads for torch."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    return env


def pick(items: Sequence[Path], images: int | None, spread: bool) -> list[Path]:
    """The first `images` items, or with `spread` `images` evenly spaced ones (index floor(i * len / images))."""
    if not images or images >= len(items):
        return list(items)
    if spread:
        return [items[i * len(items) // images] for i in range(images)]
    return list(items[:images])


def prepare_originals(data: Path, dest: Path, images: int | None, spread: bool = False) -> list[str]:
    """Copy the chosen `<id>.png` of `data` (see `pick`, sorted by name) into `dest`; `dest` then holds exactly those."""
    pngs = sorted(p for p in data.glob("*.png") if p.is_file() and not p.is_symlink())
    if not pngs:
        raise CampaignError(f"{data}: no .png originals; build the demo set: python -m evaluator.demo.demo_data "
                            f"--out {data}")
    chosen = pick(pngs, images, spread)
    dest.mkdir(parents=True, exist_ok=True)
    keep = {p.name for p in chosen}
    have = {p.name for p in dest.glob("*.png")}
    runs = dest.parent / "runs"
    if have and have != keep and runs.is_dir() and any(q.is_dir() and not q.name.startswith(".") for q in runs.iterdir()):
        raise CampaignError(f"{dest.parent}: its runs were made on another image set ({len(have)} images, not the "
                            f"{len(keep)} asked for); use another --out for this --images/--spread choice")
    for old in dest.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    for p in chosen:
        target = dest / p.name
        if not target.exists() or target.read_bytes() != p.read_bytes():
            shutil.copyfile(p, target)
    return [p.stem for p in chosen]


@dataclass
class WallTimes:
    """Wall seconds per CLI call, persisted in `walltimes.json` (a resumed call keeps its first, full time)."""

    path: Path
    times: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WallTimes:
        times = json.loads(path.read_text()) if path.is_file() else {}
        return cls(path, {str(k): float(v) for k, v in times.items()})

    def record(self, key: str, seconds: float, resumed: bool) -> None:
        if resumed and key in self.times:
            return
        self.times[key] = round(seconds, 2)
        write_atomic(self.path, json.dumps(self.times, indent=2, sort_keys=True) + "\n")


def campaign_parser(description: str, out: str, doc: str, out_help: str = "campaign folder (originals, runs, "
                    "results); reused and resumed across calls", methods_note: str = "") -> argparse.ArgumentParser:
    """The arguments every campaign script takes: --out (default `out`), --data, --images, --spread, --methods,
    --threads, --jobs, --doc (default `doc`); a script adds its own."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(out), help=out_help)
    ap.add_argument("--data", type=Path, default=Path("data/demo"), help="folder of original <id>.png (demo set)")
    ap.add_argument("--images", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--spread", action="store_true",
                    help="with --images N: N evenly spaced images of the sorted set instead of the first N")
    ap.add_argument("--methods", default="", help="comma-separated methods (default: all of pp-attack --list)"
                    + methods_note)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every CLI call (OMP_NUM_THREADS)")
    ap.add_argument("--jobs", type=int, default=2, help="pp-attack calls running at the same time")
    ap.add_argument("--doc", type=Path, default=Path(doc), help="markdown file to write")
    return ap


@dataclass
class Campaign:
    """An opened campaign (`open_campaign`): its arguments, start time, CLI environment, chosen methods, the
    prepared originals and their ids, the runs folder and the recorded wall times."""

    args: argparse.Namespace
    raw: list[str]
    start: float
    env: dict[str, str]
    out: Path
    methods: list[str]
    originals: Path
    images: list[str]
    runs_dir: Path
    walltimes: "WallTimes"


def open_campaign(parse_args, argv: list[str] | None) -> Campaign:
    """What every campaign script does first: INFO logging, `parse_args(argv or sys.argv[1:])`, the CLI
    environment, the `--methods` subset, the chosen originals copied into OUT/originals, and OUT/walltimes.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    start = time.perf_counter()
    env = cli_env(args.threads)
    out = args.out.resolve()
    methods = select_methods(env, args.methods)
    originals = out / "originals"
    images = prepare_originals(args.data.resolve(), originals, args.images or None, args.spread)
    return Campaign(args, raw, start, env, out, methods, originals, images, out / "runs",
                    WallTimes.load(out / "walltimes.json"))


def run_cli(cmd: Sequence[str], env: dict[str, str], what: str) -> float:
    """Run one CLI call; return its wall seconds; raise CampaignError with the tail of its stderr on failure."""
    log.info("%s: %s", what, shlex.join(cmd))
    start = time.perf_counter()
    out = subprocess.run(list(cmd), capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip()[-800:]
        raise CampaignError(f"{what}: `{shlex.join(cmd)}` exited {out.returncode} after {seconds:.0f} s:\n{tail}")
    return seconds


def run_attacks(specs: Iterable[AttackSpec], originals: Path, runs_dir: Path, env: dict[str, str],
                walltimes: WallTimes, jobs: int = 1) -> dict[str, str]:
    """Run every spec, `jobs` CLI calls at a time (finished runs resume in seconds); return {run: error} of failures.

    The wall time of a call made while others ran in parallel includes their competition for the cores.
    """
    specs = list(specs)
    n_images = len(list(originals.glob("*.png")))
    resumed = {s.run: len(done_log_rows(runs_dir, s.run)) >= n_images for s in specs}
    failures: dict[str, str] = {}

    def one(spec: AttackSpec) -> float:
        return run_cli(spec.argv(originals, runs_dir), env, f"attack {spec.run}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(one, spec): spec for spec in specs}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                seconds = fut.result()
            except CampaignError as exc:
                failures[spec.run] = str(exc)
                log.error("%s", exc)
                continue
            walltimes.record(f"pp-attack {spec.run}", seconds, resumed[spec.run])
            log.info("attack %s: %.0f s%s", spec.run, seconds, " (resumed)" if resumed[spec.run] else "")
    return failures


def evaluate(originals: Path, runs_dir: Path, results: Path, biqa: str, env: dict[str, str],
             walltimes: WallTimes) -> None:
    cmd = ["pp-evaluate", "--originals", str(originals), "--runs", str(runs_dir), "--out", str(results),
           "--biqa", biqa, "--no-progress"]
    seconds = run_cli(cmd, env, f"evaluate ({biqa})")
    walltimes.record(f"pp-evaluate --biqa {biqa}", seconds, resumed=False)


# -- reading the CLIs' outputs -----------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CampaignError(f"{path}: missing; the CLI call that writes it did not finish (see the log above)")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def log_file(runs_dir: Path, run: str) -> Path:
    """The attack's per-image log: `runs/.pp-attack/<run>/log.csv` (kept outside the run), else `runs/<run>/log.csv`."""
    from submission.run_folder import LOG_CSV, log_path

    for candidate in (log_path(runs_dir / run), runs_dir / run / LOG_CSV):
        if candidate.is_file():
            return candidate
    return log_path(runs_dir / run)


def done_log_rows(runs_dir: Path, run: str) -> list[dict[str, str]]:
    path = log_file(runs_dir, run)
    return _read_csv(path) if path.is_file() else []


def _read_results_csv(path: Path) -> list[dict[str, str]]:
    """A CSV pp-evaluate wrote: its text cells are spreadsheet-safe (`evaluator.common.csv_safe`); undo that."""
    from evaluator.common.csv_safe import unsafe_text

    return [{k: unsafe_text(v) for k, v in row.items()} for row in _read_csv(path)]


def read_runs_csv(results: Path) -> dict[str, dict[str, str]]:
    from evaluator.contracts.results import RUNS_CSV

    return {r["run"]: r for r in _read_results_csv(results / RUNS_CSV)}


def read_scores_csv(results: Path) -> dict[str, list[dict[str, str]]]:
    by_run: dict[str, list[dict[str, str]]] = {}
    from evaluator.contracts.results import SCORES_CSV

    for r in _read_results_csv(results / SCORES_CSV):
        by_run.setdefault(r["run"], []).append(r)
    return by_run


@dataclass(frozen=True)
class AttackStats:
    """From one run's log: success rates below s_a in the image domain and after the organizer's JPEG-90."""

    n: int
    p_png: float
    p_jpeg: float
    psnr_log: float
    seconds: float
    mean_after: float
    mean_jpeg: float


def attack_stats(rows: Sequence[dict[str, str]], s_a: float) -> AttackStats:
    """P_PNG = mean(score_after < s_a), P_JPEG = mean(score_jpeg < s_a) (Bonnet et al., Tables 1-2)."""
    if not rows:
        raise CampaignError("empty attack log: the run wrote no image")
    after = [float(r["score_after"]) for r in rows]
    jpeg = [float(r["score_jpeg"]) for r in rows]
    psnrs = [float(r["psnr"]) for r in rows if r["psnr"] not in ("", "inf") and float(r["psnr"]) != float("inf")]
    n = len(rows)
    return AttackStats(
        n=n,
        p_png=sum(a < s_a for a in after) / n,
        p_jpeg=sum(j < s_a for j in jpeg) / n,
        psnr_log=sum(psnrs) / len(psnrs) if psnrs else float("inf"),
        seconds=sum(float(r["seconds"]) for r in rows) / n,
        mean_after=sum(after) / n,
        mean_jpeg=sum(jpeg) / n,
    )


# -- formatting ----------------------------------------------------------------------------------------------------
def pct(x: float | str | None) -> str:
    if x in (None, ""):
        return "n/a"
    return f"{100 * float(x):.1f}%"


def num(x: float | str | None, digits: int = 2) -> str:
    if x in (None, ""):
        return "n/a"
    v = float(x)
    if v == float("inf"):
        return "inf"
    return f"{v:.{digits}f}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line(script: str, argv: Sequence[str]) -> str:
    return shlex.join(["python", script, *argv])


NOTES_MARKER = "<!-- hand-written discussion below: kept when the tables are regenerated -->"


def kept_notes(doc: Path) -> str:
    """The hand-written part of an existing doc (after NOTES_MARKER), so regenerating the tables keeps it."""
    if not doc.is_file():
        return ""
    text = doc.read_text()
    return text.split(NOTES_MARKER, 1)[1].lstrip("\n") if NOTES_MARKER in text else ""


def subset_text(data: Path, images: list[str], limit: int, spread: bool) -> str:
    total = len(list(data.glob("*.png")))
    if not limit or len(images) == total:
        return f"all {len(images)} images of `{data}`"
    how = "evenly spaced (--spread)" if spread else "the first, sorted by name"
    return f"{len(images)} of the {total} images of `{data}`, {how}: {', '.join(images)}"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def machine_line(env: dict[str, str]) -> str:
    """Library versions and CPU count, for the header of a table."""
    code = ("import torch, numpy, platform, os; print(f'python {platform.python_version()}, torch {torch.__version__}, "
            "numpy {numpy.__version__}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return out.stdout.strip() or "versions unavailable"
