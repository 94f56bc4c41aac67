"""The screenshots in README.md and docs/jury.md, made in headless Chromium from a real small competition.

    python benchmarks/screenshots.py [--out docs/img] [--work DIR]      (= make screenshots)

1. Originals: the first crop of each of 4 photos of the demo set (`evaluator.demo.demo_data`, shipped inside the
   scikit-image and scikit-learn wheels); 6 runs of `pp-attack` naive methods (noise, blur, JPEG) on them.
2. `pp-evaluate` with the default task: report.html and the jury package.
3. Screenshots (/usr/bin/chromium through playwright, --headless --no-sandbox --disable-gpu), each written as an
   optimized 256-colour PNG:
   - `report-gallery.png`: the report's camouflage gallery (1280x900);
   - `juror-desktop.png` (1280x800) and `juror-phone.png` (390x844): a juror's first screen;
   - `organizer.png`: the organizer page after a simulated jury (`jury_app.testing.simulate`, scripted jurors,
     not people) on a copy of the package.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluator.common.imageio import save_png  # noqa: E402
from evaluator.contracts.jury_package import load_package  # noqa: E402
from evaluator.contracts.results import JURY_DIR, REPORT_HTML  # noqa: E402
from evaluator.demo.demo_data import candidate_crops  # noqa: E402
from jury_app.testing.browser import CHROMIUM, LAUNCH_ARGS  # noqa: E402
from jury_app.testing.devserver import free_port, start_server  # noqa: E402
from jury_app.testing.simulate import simulate  # noqa: E402
from jury_app.votes.store import VoteStore  # noqa: E402

RUNS = [("noise", "noise-s8", {"sigma": 8 / 255}), ("noise", "noise-s24", {"sigma": 24 / 255}),
        ("noise", "noise-s32", {"sigma": 32 / 255}), ("blur", "blur-1.5", {"sigma": 1.5}),
        ("blur", "blur-3", {"sigma": 3.0}), ("jpeg", "jpeg-q10", {"quality": 10}),
        ("jpeg", "jpeg-q20", {"quality": 20})]
ALL_IMAGES = """() => { const i = [...document.querySelectorAll('[data-testid="stImage"] img')];
  return i.length >= %d && i.every(e => e.complete && e.naturalWidth > 0); }"""
WAIT_MS = 120_000


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def competition(work: Path) -> Path:
    """Originals, runs and results in `work`; returns the results folder."""
    originals = work / "originals"
    originals.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for crop in candidate_crops():
        photo = crop.image.split("_")[0]
        if photo not in seen and len(seen) < 4:
            seen.add(photo)
            save_png(originals / f"{crop.image}.png", crop.pixels)
    bin_dir = Path(sys.executable).parent
    for method, name, params in RUNS:
        sets = [x for k, v in params.items() for x in ("--set", f"{k}={v}")]
        run([str(bin_dir / "pp-attack"), method, "--originals", str(originals), "--out", str(work / "runs" / name),
             "--team", "demo", *sets])
    run([str(bin_dir / "pp-evaluate"), "--originals", str(originals), "--runs", str(work / "runs"),
         "--out", str(work / "results")])
    return work / "results"


def save_small(png: bytes, path: Path) -> None:
    """An optimized 256-colour PNG (screenshots of photos stay a few hundred KB)."""
    im = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    im.save(path, format="PNG", optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def shoot(results: Path, out: Path, work: Path) -> None:
    from playwright.sync_api import sync_playwright

    jury = Path(shutil.copytree(results / JURY_DIR, work / "screens_jury", symlinks=False))
    store = VoteStore(load_package(jury))
    juror = store.add_jurors(1)[0]
    voted = Path(shutil.copytree(results / JURY_DIR, work / "voted_jury", symlinks=False))
    simulate(voted, work / "originals", jurors=7)
    admin = VoteStore(load_package(voted)).new_admin_token()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((results / REPORT_HTML).resolve().as_uri())
        page.locator("#gallery").scroll_into_view_if_needed()
        page.evaluate("document.getElementById('gallery').scrollIntoView()")
        save_small(page.screenshot(), out / "report-gallery.png")
        page.get_by_role("button", name="Amplified difference").click()
        page.wait_for_timeout(300)
        save_small(page.screenshot(), out / "report-gallery-difference.png")
        page.close()
        for where, served in (("juror", jury), ("organizer", voted)):
            port = free_port()
            server = start_server(served, port, log_path=work / f"{where}.log")
            try:
                base = f"http://127.0.0.1:{port}"
                if where == "juror":
                    for name, size in (("juror-desktop", (1280, 800)), ("juror-phone", (390, 844))):
                        ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
                        pg = ctx.new_page()
                        pg.goto(f"{base}/?token={juror.token}")
                        pg.get_by_text("Image 1 of", exact=False).wait_for(timeout=WAIT_MS)
                        n = len(load_package(jury).images[0].candidates)
                        pg.wait_for_function(ALL_IMAGES % n, timeout=WAIT_MS)
                        pg.wait_for_timeout(500)
                        save_small(pg.screenshot(), out / f"{name}.png")
                        ctx.close()
                else:
                    ctx = browser.new_context(viewport={"width": 1280, "height": 1760})
                    pg = ctx.new_page()
                    pg.goto(f"{base}/organizer?admin={admin}")
                    pg.get_by_text("Per image: the candidates", exact=False).wait_for(timeout=WAIT_MS)
                    pg.wait_for_function(ALL_IMAGES % 3, timeout=WAIT_MS)
                    pg.wait_for_timeout(1500)  # the chart draws after the data arrives
                    save_small(pg.screenshot(), out / "organizer.png")
                    ctx.close()
            finally:
                server.kill()
                server.wait(timeout=30)
        browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--work", type=Path, default=None, help="keep the competition here (default: a temp folder)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        results = work / "results" if (work / "results" / REPORT_HTML).exists() else competition(work)
        for leftover in ("screens_jury", "voted_jury"):
            shutil.rmtree(work / leftover, ignore_errors=True)
        shoot(results, args.out, work)
    print(f"\nCommand: python benchmarks/screenshots.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
