"""The camouflage gallery of report.html: what each run did to the photos, seen, not read.

Two parts, both inside the one self-contained page (images as JPEG data URIs, a few lines of inline script):
- per jury image (the selection, in its order): the original and every scored run's version as it was scored
  (the submitted image after the organizer JPEG), each with its score, PSNR and SSIM against the original;
- per scored run: its image with the lowest score (strongest camouflage), the median and the highest score (by
  post-JPEG score over the high-quality originals, ties by image id), each beside its original.

A switch (two toggle buttons, `aria-pressed`) replaces every run's thumbnail by its amplified difference map:
d = max over R, G, B of |submitted - original| (the submitted image, before the JPEG: what the run changed),
shown as grey d * 255 / p99 clipped to 255, where p99 is the 99th percentile of d over every pixel of the images
the gallery shows for that run: the run's 99th percentile is white. Each thumbnail is a button; it opens the
full-size image (or difference map) in a modal `<dialog>` (Esc or "Close" closes it). Every image has alt text
with the numbers; run names (participant input) are HTML-escaped wherever they appear.

Size bound: every embedded JPEG is encoded within a cap from one byte budget (`DEFAULT_BUDGET`, counted in base64
characters) shared out as the gallery is written: a cell (one version of one image: thumbnail, full size and, for
runs, both difference images) gets remaining_budget / remaining_cells; its thumbnails take at most
`THUMB_CAP` each and the full-size images share the rest. An image is encoded at the highest JPEG quality of
`QUALITIES` that fits its cap (searched from the quality that fitted the previous image of its kind), else shrunk
until it fits; full size means the long side at most `FULL_SIDE`.
So the gallery's images never exceed the budget (18 M characters), and report.html stays under 20 MB for 13 runs
x 20 images (`tests/test_report_gallery.py` checks it on a synthetic field of noisy 512x384 images).

Memory: images are processed one (run, image) pair at a time and only the encoded bytes are kept; a first pass
reads the pairs once to histogram d per run (256 counts each) for the percentile, the second writes the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from evaluator.scoring.results import EvaluationResult, ImageScore

DEFAULT_BUDGET = 18_000_000  # base64 characters of every image of the gallery together
THUMB_WIDTH = 200
THUMB_CAP = 14_000  # bytes of one thumbnail at most
FULL_SIDE = 1024
QUALITIES = (85, 75, 65, 55, 45, 35, 25)
MIN_CAP = 1_500  # a cap below this still gets a (tiny) image: the bound is max(budget, cells * 4 * MIN_CAP)
PERCENTILE = 99.0

CSS = """
.gswitch{margin:.6em 0;display:flex;gap:.5em;flex-wrap:wrap;align-items:center}
.gswitch button{font:inherit;padding:.35em .9em;border:1px solid #3465a4;background:#fff;color:#3465a4;border-radius:4px;cursor:pointer}
.gswitch button[aria-pressed=true]{background:#3465a4;color:#fff}
.gstrip{display:flex;flex-wrap:wrap;gap:10px;margin:.4em 0 1.2em}
.gcell{margin:0;border:1px solid #ddd;padding:5px;background:#fafafa;width:212px}
.gcell figcaption{font-size:12px;color:#333;overflow-wrap:anywhere}
.gopen{display:block;padding:0;border:0;background:none;cursor:zoom-in}
.gopen img{display:block;width:200px;height:auto}
.gopen:focus-visible{outline:3px solid #d95f02;outline-offset:2px}
dialog.gview{max-width:96vw;max-height:96vh;padding:.6em;border:1px solid #888}
dialog.gview img{display:block;max-width:calc(96vw - 2em);max-height:calc(96vh - 6em);width:auto;height:auto}
dialog.gview p{margin:.3em 0;font-size:13px}
"""

SCRIPT = """(function(){
var d=document.getElementById('gview');if(!d)return;var big=d.querySelector('img'),cap=d.querySelector('p');var mode='img';
document.querySelectorAll('button.gmode').forEach(function(b){b.addEventListener('click',function(){mode=b.dataset.mode;
document.querySelectorAll('button.gmode').forEach(function(x){x.setAttribute('aria-pressed',String(x===b));});
document.querySelectorAll('img.gimg[data-diff]').forEach(function(i){if(!i.dataset.img)i.dataset.img=i.src;i.src=mode==='diff'?i.dataset.diff:i.dataset.img;
i.alt=mode==='diff'?i.dataset.altdiff:i.dataset.altimg;});});});
document.querySelectorAll('button.gopen').forEach(function(b){b.addEventListener('click',function(){
var diff=mode==='diff'&&b.dataset.fulldiff;big.src=diff?b.dataset.fulldiff:b.dataset.full;
big.alt=b.querySelector('img').alt;cap.textContent=big.alt;d.showModal();});});
d.querySelector('button').addEventListener('click',function(){d.close();});
})();"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _encode(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_within(rgb: np.ndarray, cap: int, *, long_side: int | None = None, width: int | None = None,
                hint: dict[str, int] | None = None, kind: str = "") -> bytes:
    """JPEG bytes of `rgb` (H, W, 3 or H, W uint8), at most `max(cap, MIN_CAP)` bytes: sized to `width` (or with
    its long side at most `long_side`), at the highest quality of QUALITIES that fits, else shrunk by
    sqrt(cap / size) steps until it fits.

    `hint[kind]`: the quality index that fitted the last image of this kind; tried first (with one step up), so
    a gallery of similar images needs about two encodes each instead of a search."""
    cap = max(int(cap), MIN_CAP)
    im = Image.fromarray(rgb)
    w, h = im.size
    scale = 1.0
    if width is not None:
        scale = width / w
    elif long_side is not None and max(w, h) > long_side:
        scale = long_side / max(w, h)
    tried: dict[tuple[tuple[int, int], int], bytes] = {}
    while True:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        sized = im if size == im.size else im.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.1)

        def fits(i: int) -> bool:
            if (size, i) not in tried:
                tried[(size, i)] = _encode(sized, QUALITIES[i])
            return len(tried[(size, i)]) <= cap

        start = hint.get(kind, 0) if hint is not None else 0
        found = None
        if fits(start):  # the hint fits: go up while the next quality fits too
            found = start
            while found > 0 and fits(found - 1):
                found -= 1
        else:  # bisect below the hint: QUALITIES falls, so sizes fall along it
            lo, hi = start + 1, len(QUALITIES) - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                if fits(mid):
                    found, hi = mid, mid - 1
                else:
                    lo = mid + 1
        if found is not None:
            if hint is not None:
                hint[kind] = found
            return tried[(size, found)]
        smallest = tried[(size, len(QUALITIES) - 1)]
        if max(size) <= 8:
            return smallest  # cannot happen for cap >= MIN_CAP (an 8x8 JPEG is a few hundred bytes)
        scale *= max(0.25, min(0.9, math.sqrt(cap / len(smallest))))


def difference(submitted: np.ndarray, original: np.ndarray) -> np.ndarray:
    """d = max over channels of |submitted - original| (H, W) uint8."""
    a = submitted.astype(np.int16)
    a -= original
    np.abs(a, out=a)
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2]).astype(np.uint8)


def percentile_of_counts(counts: np.ndarray, q: float = PERCENTILE) -> int:
    """The smallest value v with at least q% of the counted pixels <= v (0 when nothing was counted)."""
    total = int(counts.sum())
    if total == 0:
        return 0
    return int(np.searchsorted(np.cumsum(counts), math.ceil(total * q / 100.0)))


def amplified(d: np.ndarray, p99: int) -> np.ndarray:
    """Grey map d * 255 / p99 clipped to 255 (p99 = 0: the run changed nothing shown; black)."""
    if p99 <= 0:
        return np.zeros_like(d)
    return np.clip(d.astype(np.float32) * (255.0 / p99), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RunPicks:
    """A run's images with the lowest, the median and the highest post-JPEG score."""

    run: str
    lowest: str
    median: str
    highest: str


def run_picks(result: EvaluationResult) -> list[RunPicks]:
    """Per scored run, by (score, image id) over the high-quality originals: first, middle ((n-1)//2), last."""
    excluded = set(result.excluded_originals)
    rows: dict[str, list[ImageScore]] = {}
    for r in result.scores:
        if r.image not in excluded:
            rows.setdefault(r.run, []).append(r)
    out = []
    for run in sorted(rows):
        ordered = sorted(rows[run], key=lambda r: (r.score, r.image))
        out.append(RunPicks(run, ordered[0].image, ordered[(len(ordered) - 1) // 2].image, ordered[-1].image))
    return out


class _Budget:
    """remaining characters shared out evenly over the remaining cells."""

    def __init__(self, chars: int, cells: int) -> None:
        self.chars, self.cells = chars, max(cells, 1)

    def cell(self) -> int:
        """The byte cap of the next cell's images together (base64: 4 characters per 3 bytes)."""
        cap = self.chars // self.cells * 3 // 4
        self.cells = max(self.cells - 1, 1)
        return cap

    def spend(self, data: bytes) -> str:
        uri = _uri(data)
        self.chars -= len(uri) - len("data:image/jpeg;base64,")
        return uri


def _numbers(row: ImageScore) -> str:
    psnr = "&infin;" if math.isinf(row.psnr) else f"{row.psnr:.2f} dB"
    return f"score {row.score:.1f} &middot; PSNR {psnr} &middot; SSIM {row.ssim:.4f}"


def _numbers_alt(row: ImageScore) -> str:
    psnr = "infinite" if math.isinf(row.psnr) else f"{row.psnr:.2f} dB"
    return f"score {row.score:.1f}, PSNR {psnr}, SSIM {row.ssim:.4f}"


class _Writer:
    def __init__(self, budget: _Budget, original: Callable[[str], np.ndarray],
                 submitted: Callable[[str, str], np.ndarray], scored: Callable[[np.ndarray], np.ndarray],
                 p99: Mapping[str, int], clean: Mapping[str, float]) -> None:
        self.budget, self.original, self.submitted, self.scored = budget, original, submitted, scored
        self.p99, self.clean = p99, clean
        self.hint: dict[str, int] = {}  # quality index per kind of image (`jpeg_within`)

    def original_cell(self, image: str, rgb: np.ndarray, label: str = "original") -> str:
        cap = self.budget.cell()
        thumb = self.budget.spend(jpeg_within(rgb, min(THUMB_CAP, cap // 4), width=THUMB_WIDTH, hint=self.hint,
                                              kind="original thumb"))
        full = self.budget.spend(jpeg_within(rgb, cap - min(THUMB_CAP, cap // 4), long_side=FULL_SIDE,
                                             hint=self.hint, kind="original full"))
        clean = self.clean.get(image, math.nan)
        alt = f"Original {image}, clean score {clean:.1f}"
        return (f'<figure class="gcell"><button type="button" class="gopen" data-full="{full}" '
                f'aria-label="Open full size: {_e(alt)}"><img class="gimg" src="{thumb}" alt="{_e(alt)}" '
                f'width="{THUMB_WIDTH}"></button><figcaption><b>{_e(label)}</b> {_e(image)}<br>'
                f"clean score {clean:.1f}</figcaption></figure>")

    def run_cell(self, row: ImageScore, original: np.ndarray, label: str | None = None) -> str:
        cap = self.budget.cell()
        submitted = self.submitted(row.run, row.image)
        scored = self.scored(submitted)
        diff = amplified(difference(submitted, original), self.p99.get(row.run, 0))
        del submitted
        tcap = min(THUMB_CAP, cap // 8)
        fcap = (cap - 2 * tcap) // 2
        thumb = self.budget.spend(jpeg_within(scored, tcap, width=THUMB_WIDTH, hint=self.hint, kind="thumb"))
        full = self.budget.spend(jpeg_within(scored, fcap, long_side=FULL_SIDE, hint=self.hint, kind="full"))
        del scored
        dthumb = self.budget.spend(jpeg_within(diff, tcap, width=THUMB_WIDTH, hint=self.hint, kind="diff thumb"))
        dfull = self.budget.spend(jpeg_within(diff, fcap, long_side=FULL_SIDE, hint=self.hint, kind="diff full"))
        del diff
        alt_img = f"{row.run} on {row.image}, as scored (after the organizer JPEG): {_numbers_alt(row)}"
        alt_diff = (f"Amplified difference of {row.run} on {row.image} (white = the run's 99th percentile, "
                    f"{self.p99.get(row.run, 0)} levels): {_numbers_alt(row)}")
        head = f"<b>{_e(label)}</b><br>" if label else ""
        return (f'<figure class="gcell"><button type="button" class="gopen" data-full="{full}" '
                f'data-fulldiff="{dfull}" aria-label="Open full size: {_e(alt_img)}"><img class="gimg" '
                f'src="{thumb}" data-diff="{dthumb}" alt="{_e(alt_img)}" '
                f'data-altimg="{_e(alt_img)}" data-altdiff="{_e(alt_diff)}" width="{THUMB_WIDTH}"></button>'
                f"<figcaption>{head}<b>{_e(row.run)}</b><br>{_numbers(row)}</figcaption></figure>")


def _pairs_by_image(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for run, image in pairs:
        if run not in out.setdefault(image, []):
            out[image].append(run)
    return out


def gallery_html(result: EvaluationResult, *, original: Callable[[str], np.ndarray],
                 submitted: Callable[[str, str], np.ndarray], scored: Callable[[np.ndarray], np.ndarray],
                 budget: int = DEFAULT_BUDGET) -> str:
    """The gallery section (heading, switch, strips, dialog, script) as one HTML string; '' without a scored run.

    `original(image)` and `submitted(run, image)` return (H, W, 3) uint8 RGB; `scored(rgb)` returns what the BIQA
    scored for a submitted image (the organizer JPEG round trip). Called once per image / pair per pass.
    """
    rows = {(r.run, r.image): r for r in result.scores}
    scored_runs = sorted({r.run for r in result.scores})
    if not scored_runs:
        return ""
    selected = [s.image for s in result.selection]
    picks = run_picks(result)
    shown = [(run, image) for image in selected for run in scored_runs if (run, image) in rows]
    shown += [(p.run, image) for p in picks for image in (p.lowest, p.median, p.highest)]
    # pass 1: the histogram of d per run over the pairs it shows
    counts = {run: np.zeros(256, np.int64) for run in scored_runs}
    for image, runs in _pairs_by_image(shown).items():
        base = original(image)
        for run in runs:
            counts[run] += np.bincount(difference(submitted(run, image), base).ravel(), minlength=256)
        del base
    p99 = {run: percentile_of_counts(c) for run, c in counts.items()}
    cells = len(selected) * (1 + len(scored_runs)) + 6 * len(picks)
    writer = _Writer(_Budget(budget, cells), original, submitted, scored, p99, result.original_scores)
    out = [f"<style>{CSS}</style>",
           "<h2 id='gallery'>Camouflage gallery</h2>",
           "<p class='note'>What the runs did to the photos: each run's version as it was scored (the submitted "
           "image after the organizer JPEG), with its score, PSNR and SSIM against the original. Click an image "
           "(or focus it and press Enter) to see it full size. The difference view shows max over R, G, B of "
           "|submitted &minus; original| (before the JPEG), amplified per run so that the run's 99th percentile "
           "is white. Images are re-encoded as JPEG to keep this file small: look at the run folders for the "
           "exact pixels.</p>",
           "<div class='gswitch' role='group' aria-label='What the run thumbnails show'>"
           "<span>Show:</span><button type='button' class='gmode' data-mode='img' aria-pressed='true'>"
           "Scored images</button><button type='button' class='gmode' data-mode='diff' aria-pressed='false'>"
           "Amplified difference</button></div>"]
    if selected:
        out.append("<h3>Jury images</h3>")
    for image in selected:
        base = original(image)
        cells_html = [writer.original_cell(image, base)]
        cells_html += [writer.run_cell(rows[(run, image)], base) for run in scored_runs if (run, image) in rows]
        del base
        out.append(f"<h4>{_e(image)}</h4><div class='gstrip' role='group' aria-label='{_e(image)}: the original "
                   f"and every run'>" + "".join(cells_html) + "</div>")
    out.append("<h3>Per run: lowest, median and highest score</h3>")
    for p in picks:
        cells_html = []
        for label, image in (("lowest score", p.lowest), ("median score", p.median), ("highest score", p.highest)):
            base = original(image)
            cells_html.append(writer.original_cell(image, base))
            cells_html.append(writer.run_cell(rows[(p.run, image)], base, label))
            del base
        out.append(f"<h4>{_e(p.run)}</h4><div class='gstrip' role='group' aria-label='{_e(p.run)}: lowest, median "
                   f"and highest score'>" + "".join(cells_html) + "</div>")
    out.append("<dialog id='gview' class='gview' aria-label='Full-size image'><button type='button'>Close"
               "</button><img alt=''><p></p></dialog>")
    out.append(f"<script>{SCRIPT}</script>")
    return "\n".join(out)

