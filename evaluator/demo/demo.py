"""`make demo`: the whole competition on the embedded demo set, end to end, with the real command-line tools.

Stages (each timed): attacks (`pp-attack`, one run folder per method) -> organizer scoring (`pp-evaluate`) ->
juror links for a real jury (`pp-jury jurors`) -> a SIMULATED jury on a copy of the jury package
(`python -m jury_app.testing.simulate`, scripted jurors, see its docstring) -> its ranking (`pp-jury rank`).
Every command is printed before it runs, so each stage can be repeated by hand.

    python -m evaluator.demo.demo --data data/demo --work demo_out [--images N] [--fast]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evaluator.contracts.jury_package import STORE_NAME
from evaluator.contracts.results import JURY_DIR, REPORT_HTML, RUNS_CSV
from evaluator.demo.demo_data import manifest_path

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class DemoRun:
    run: str
    method: str
    settings: tuple[str, ...] = ()  # --set key=value


#: Six attacks and one naive baseline, with settings that keep the demo within minutes on 2 CPU cores.
RUNS = (
    DemoRun("blur", "blur"),
    DemoRun("ifgsm", "ifgsm"),
    DemoRun("enhance-ifgsm", "enhance-ifgsm"),
    DemoRun("pgd-l2", "pgd-l2", ("search_steps=5",)),
    DemoRun("pgd-dct", "pgd-dct", ("search_steps=5", "lambda_steps=6")),
    DemoRun("cw-sensitivity", "cw-sensitivity", ("iters=50", "lr=0.02")),
    DemoRun("uap-optimized", "uap-optimized", ("epochs=3",)),
)


def tool(name: str) -> str:
    """The console script next to this interpreter (the project's venv), else from PATH."""
    local = BIN / name
    return str(local) if local.exists() else name


def run(cmd: list[str], stdout: int | None = None) -> subprocess.CompletedProcess:
    print("  $ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    proc = subprocess.run(cmd, stdout=stdout, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: command failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return proc


def subset(data: Path, work: Path, n: int | None) -> Path:
    """The originals the demo attacks: data itself, or a folder with its first n images."""
    if n is None:
        return data
    folder = work / "originals"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in sorted(data.glob("*.png"))[:n]:
        shutil.copy2(path, folder / path.name)
    return folder


def print_runs_table(results: Path) -> None:
    from evaluator.contracts.results import read_csv
    from evaluator.common.text import show_name

    rows = read_csv(results / RUNS_CSV)
    print(f"\n{'run':<16} {'status':<8} {'accuracy':>8} {'qualified':>9} {'mean':>6} {'psnr':>6} {'ssim':>6}")
    for r in rows:
        mark = "  <- qualified" if r.get("qualified") in ("True", "true", "1") else ""
        acc = f"{float(r['accuracy']):.2f}" if r.get("accuracy") else "-"
        mean = f"{float(r['mean_score']):.1f}" if r.get("mean_score") else "-"
        psnr = f"{float(r['psnr']):.1f}" if r.get("psnr") else "-"
        ssim = f"{float(r['ssim']):.3f}" if r.get("ssim") else "-"
        print(f"{show_name(r['run']):<16} {r['status']:<8} {acc:>8} {r.get('qualified', ''):>9} {mean:>6} {psnr:>6} "
              f"{ssim:>6}{mark}")
        if r["status"] != "scored":
            print(f"    error: {show_name(r.get('error', ''))}")
        if r.get("warning"):
            print(f"    warning: {show_name(r['warning'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluator.demo.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="originals (make data builds it)")
    parser.add_argument("--work", type=Path, default=Path("demo_out"), help="where runs and results go")
    parser.add_argument("--images", type=int, default=None, help="attack only the first N images")
    parser.add_argument("--jurors", type=int, default=7, help="simulated jurors")
    args = parser.parse_args(argv)
    if not manifest_path(args.data).is_file():
        print(f"demo: {manifest_path(args.data)} not found; build the demo set first with `make data`",
              file=sys.stderr)
        return 2
    work: Path = args.work
    runs_dir, results = work / "runs", work / "results"
    runs_dir.mkdir(parents=True, exist_ok=True)
    originals = subset(args.data, work, args.images)
    timings: list[tuple[str, float]] = []

    def stage(name: str, t0: float) -> None:
        timings.append((name, time.perf_counter() - t0))
        print(f"  [{name}: {timings[-1][1]:.1f} s]", flush=True)

    print(f"== attacks on {len(list(originals.glob('*.png')))} originals in {originals}")
    for r in RUNS:
        t0 = time.perf_counter()
        out = runs_dir / r.run
        cmd = [tool("pp-attack"), r.method, "--originals", str(originals), "--out", str(out), "--quiet"]
        for s in r.settings:
            cmd += ["--set", s]
        run(cmd)
        stage(f"attack {r.run}", t0)

    print("\n== organizer scoring (JPEG-90 with the pinned libjpeg, then BRISQUE)")
    t0 = time.perf_counter()
    run([tool("pp-evaluate"), "--originals", str(originals), "--runs", str(runs_dir), "--out", str(results),
         "--no-progress"])
    stage("pp-evaluate", t0)
    print_runs_table(results)
    print(f"\nreport: {(results / REPORT_HTML).absolute()}  (open it in a browser; it works offline)")

    print("\n== a real jury: private links (the organizer link is printed on stderr)")
    t0 = time.perf_counter()
    jury = results / JURY_DIR
    run([tool("pp-jury"), "jurors", str(jury), "--add", "3"])
    stage("juror links", t0)

    print("\n== a SIMULATED jury (scripted jurors preferring high SSIM, not people) on a copy of the package")
    t0 = time.perf_counter()
    sim = work / "simulated_jury"
    if sim.exists():
        shutil.rmtree(sim)
    shutil.copytree(jury, sim, ignore=shutil.ignore_patterns(f"{STORE_NAME}*"))
    run([sys.executable, "-m", "jury_app.testing.simulate", str(sim), "--originals", str(originals),
         "--jurors", str(args.jurors)])
    run([tool("pp-jury"), "rank", str(sim)])
    stage("simulated jury + ranking", t0)

    print("\n== time per stage")
    for name, seconds in timings:
        print(f"  {name:<28} {seconds:7.1f} s")
    print(f"  {'total':<28} {sum(s for _, s in timings):7.1f} s")
    print(f"\nNext: `make jury` serves {jury} for real jurors (open the links above); "
          f"`pp-jury rank {jury}` ranks their votes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
