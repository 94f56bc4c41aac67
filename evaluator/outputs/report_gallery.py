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
characters) shared out by weight as the gallery is encoded: an original's thumbnail + full size weighs 2, a run's
scored thumbnail + full size 1 and its two difference images 1, per appearance on the page (an image shown twice,
e.g. in a jury strip and a run's picks, is encoded once and counted twice); a part gets
remaining_chars * weight / remaining_weight. Its thumbnail takes at most min(`THUMB_CAP`, cap / 4), the full
size the rest. An image is encoded at the quality that fitted the previous image of its kind (a kind: the
originals, or one run's scored or difference images, thumbnail or full size: images of one run resemble each
other; the quality is found once per kind by a search over `QUALITIES` and kept while it fits; a better one is
tried only with room to spare), else shrunk until it fits; full size means the long side at most `FULL_SIDE`.
So the gallery's images never exceed the budget (18 M characters), and report.html stays under 20 MB for 13 runs
x 20 images (`tests/test_report_gallery.py` checks it on a synthetic field of noisy 512x384 images).

Speed and memory: each distinct original and (run, image) pair is made once (`Materials`: pp-evaluate decodes,
JPEG-compresses and differences them in its worker processes, `pair_material`), and the page is encoded here in
plan order, so it does not depend on how the images were made. Pass 1 encodes the originals and scored versions
and keeps each pair's d histogram (for the run's percentile) and d (one byte per pixel, long side at most
`FULL_SIDE`); pass 2 amplifies and encodes the kept maps. Held at most: the kept maps (13 x 20 pairs at 512x384:
about 60 MB), the encoded bytes, and the materials of the few originals in flight.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
STEP_UP_ROOM = 1.25  # a better quality is tried only when the fitting one takes at most cap / 1.25

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


def _resized(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`im` at `size` (Lanczos, after integer reduction while at least 1.1x too large): how every gallery image is
    sized, in this process or (`thumb_pixels`) ahead of time in a worker."""
    return im if size == im.size else im.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.1)


def thumb_size(width: int, height: int) -> tuple[int, int]:
    """The thumbnail size of a width x height image: THUMB_WIDTH wide, the aspect ratio kept."""
    scale = THUMB_WIDTH / width
    return max(1, round(width * scale)), max(1, round(height * scale))


def thumb_pixels(rgb: np.ndarray) -> np.ndarray:
    """`rgb` at its thumbnail size, the pixels `jpeg_within(rgb, ..., width=THUMB_WIDTH)` encodes first (made in
    the workers, so that the main process only encodes)."""
    im = Image.fromarray(rgb)
    return np.asarray(_resized(im, thumb_size(*im.size)))


def jpeg_within(rgb: np.ndarray, cap: int, *, long_side: int | None = None, width: int | None = None,
                hint: dict[str, int] | None = None, kind: str = "", presized: np.ndarray | None = None) -> bytes:
    """JPEG bytes of `rgb` (H, W, 3 or H, W uint8), at most `max(cap, MIN_CAP)` bytes: sized to `width` (or with
    its long side at most `long_side`), at the highest quality of QUALITIES that fits, else shrunk by
    sqrt(cap / size) steps until it fits.

    `hint[kind]`: the quality index that fitted the last image of this kind; tried first, and a better one only
    when the fitting JPEG takes at most cap / STEP_UP_ROOM, so a gallery of similar images needs about one encode
    each: the quality is found once per kind and kept while it fits. `presized`: `rgb` already at the first size
    tried (`thumb_pixels` for a thumbnail), used instead of resizing it again."""
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
        if presized is not None and presized.shape[1::-1] == size:
            sized, presized = Image.fromarray(presized), None
        else:
            sized = _resized(im, size)

        def fits(i: int) -> bool:
            if (size, i) not in tried:
                tried[(size, i)] = _encode(sized, QUALITIES[i])
            return len(tried[(size, i)]) <= cap

        start = hint.get(kind, 0) if hint is not None else 0
        found = None
        if fits(start):  # the hint fits: go up only while there is room for a better quality (saves encodes)
            found = start
            while found > 0 and len(tried[(size, found)]) * STEP_UP_ROOM <= cap and fits(found - 1):
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
    """Remaining characters shared out by weight: a part of weight w shown k times gets
    remaining_chars * w / remaining_weight per appearance (the page holds its data URI k times)."""

    def __init__(self, chars: int, weight: int) -> None:
        self.chars, self.weight = chars, max(weight, 1)

    def cap(self, weight: int, times: int = 1) -> int:
        """The byte cap of one appearance of the next part (base64: 4 characters per 3 bytes)."""
        cap = self.chars * weight // self.weight * 3 // 4
        self.weight = max(self.weight - weight * times, 1)
        return cap

    def spend(self, data: bytes, times: int = 1) -> str:
        uri = _uri(data)
        self.chars -= times * (len(uri) - len("data:image/jpeg;base64,"))
        return uri


def _pair(budget: _Budget, rgb: np.ndarray, cap: int, hint: dict[str, int], kind: str, times: int,
          thumb_rgb: np.ndarray | None = None) -> tuple[str, str]:
    """(thumbnail, full-size) data URIs of `rgb` within `cap` bytes together: the thumbnail takes at most
    min(THUMB_CAP, cap / 4), the full size the rest. `thumb_rgb`: `thumb_pixels(rgb)`, where already made."""
    tcap = min(THUMB_CAP, cap // 4)
    thumb = budget.spend(jpeg_within(rgb, tcap, width=THUMB_WIDTH, hint=hint, kind=kind + " thumb",
                                     presized=thumb_rgb), times)
    full = budget.spend(jpeg_within(rgb, cap - tcap, long_side=FULL_SIDE, hint=hint, kind=kind + " full"), times)
    return thumb, full


def _shrunk(d: np.ndarray) -> np.ndarray:
    """d with its long side at most FULL_SIDE (what the full-size difference image shows)."""
    h, w = d.shape
    if max(h, w) <= FULL_SIDE:
        return d
    scale = FULL_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(d).resize(size, Image.Resampling.LANCZOS, reducing_gap=1.1))


def _numbers(row: ImageScore) -> str:
    psnr = "&infin;" if math.isinf(row.psnr) else f"{row.psnr:.2f} dB"
    return f"score {row.score:.1f} &middot; PSNR {psnr} &middot; SSIM {row.ssim:.4f}"


def _numbers_alt(row: ImageScore) -> str:
    psnr = "infinite" if math.isinf(row.psnr) else f"{row.psnr:.2f} dB"
    return f"score {row.score:.1f}, PSNR {psnr}, SSIM {row.ssim:.4f}"


def _original_cell(image: str, uris: tuple[str, str], clean: float, label: str = "original") -> str:
    thumb, full = uris
    alt = f"Original {image}, clean score {clean:.1f}"
    return (f'<figure class="gcell"><button type="button" class="gopen" data-full="{full}" '
            f'aria-label="Open full size: {_e(alt)}"><img class="gimg" src="{thumb}" alt="{_e(alt)}" '
            f'width="{THUMB_WIDTH}"></button><figcaption><b>{_e(label)}</b> {_e(image)}<br>'
            f"clean score {clean:.1f}</figcaption></figure>")


def _run_cell(row: ImageScore, uris: tuple[str, str], diff_uris: tuple[str, str], p99: int,
              label: str | None = None) -> str:
    (thumb, full), (dthumb, dfull) = uris, diff_uris
    alt_img = f"{row.run} on {row.image}, as scored (after the organizer JPEG): {_numbers_alt(row)}"
    alt_diff = (f"Amplified difference of {row.run} on {row.image} (white = the run's 99th percentile, "
                f"{p99} levels): {_numbers_alt(row)}")
    head = f"<b>{_e(label)}</b><br>" if label else ""
    return (f'<figure class="gcell"><button type="button" class="gopen" data-full="{full}" '
            f'data-fulldiff="{dfull}" aria-label="Open full size: {_e(alt_img)}"><img class="gimg" '
            f'src="{thumb}" data-diff="{dthumb}" alt="{_e(alt_img)}" '
            f'data-altimg="{_e(alt_img)}" data-altdiff="{_e(alt_diff)}" width="{THUMB_WIDTH}"></button>'
            f"<figcaption>{head}<b>{_e(row.run)}</b><br>{_numbers(row)}</figcaption></figure>")


class JpegMemo:
    """JPEG bytes kept by key up to `max_bytes` together (a key over the bound is not kept), each taken once."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes, self.bytes, self.items = max_bytes, 0, {}

    def keep(self, key: object, data: bytes) -> bytes:
        if key not in self.items and self.bytes + len(data) <= self.max_bytes:
            self.items[key] = data
            self.bytes += len(data)
        return data

    def pop(self, key: object) -> bytes | None:
        """The kept bytes, dropped from the memo; None when `key` was not kept."""
        data = self.items.pop(key, None)
        if data is not None:
            self.bytes -= len(data)
        return data


@dataclass(frozen=True)
class PairMaterial:
    """What the gallery needs of one (run, image) pair: the histogram of d (256 counts, for the run's
    percentile), d with its long side at most FULL_SIDE, and the scored image (what the BIQA scored)."""

    counts: np.ndarray
    diff: np.ndarray
    scored: np.ndarray
    scored_thumb: np.ndarray  # thumb_pixels(scored)


def pair_material(original: np.ndarray, submitted: np.ndarray, scored: np.ndarray) -> PairMaterial:
    """The pair's material from the original, the submitted image and the scored image (all (H, W, 3) uint8)."""
    d = difference(submitted, original)
    return PairMaterial(np.bincount(d.ravel(), minlength=256), _shrunk(d), scored, thumb_pixels(scored))


@dataclass(frozen=True)
class OriginalMaterial:
    """An original as the gallery shows it: its pixels and `thumb_pixels` of them."""

    pixels: np.ndarray
    thumb: np.ndarray


def original_material(rgb: np.ndarray) -> OriginalMaterial:
    return OriginalMaterial(rgb, thumb_pixels(rgb))


#: The gallery's images: given the plan [(image, [run, ...]), ...] (each distinct original once, with the runs
#: whose pairs it shows), yield per entry, in plan order, (OriginalMaterial, {run: PairMaterial}).
#: pp-evaluate makes them in its worker processes; `serial_materials` makes them one by one from callables.
Materials = Callable[[Sequence[tuple[str, Sequence[str]]]],
                     Iterable[tuple[OriginalMaterial, Mapping[str, PairMaterial]]]]


def serial_materials(original: Callable[[str], np.ndarray], submitted: Callable[[str, str], np.ndarray],
                     scored: Callable[[np.ndarray], np.ndarray],
                     scored_of: Callable[[str, str], np.ndarray | None] | None = None) -> Materials:
    """`Materials` from `original(image)`, `submitted(run, image)` ((H, W, 3) uint8 RGB), `scored(rgb)` (what the
    BIQA scored for a submitted image: the organizer JPEG round trip) and, where given, `scored_of(run, image)`
    (that scored image already made, else None); each called once per distinct image / pair."""
    def materials(plan: Sequence[tuple[str, Sequence[str]]]
                  ) -> Iterator[tuple[OriginalMaterial, dict[str, PairMaterial]]]:
        for image, runs in plan:
            base = original(image)
            made: dict[str, PairMaterial] = {}
            for run in runs:
                sub = submitted(run, image)
                ready = scored_of(run, image) if scored_of is not None else None
                made[run] = pair_material(base, sub, scored(sub) if ready is None else ready)
            yield original_material(base), made
    return materials


def gallery_html(result: EvaluationResult, *, materials: Materials | None = None,
                 original: Callable[[str], np.ndarray] | None = None,
                 submitted: Callable[[str, str], np.ndarray] | None = None,
                 scored: Callable[[np.ndarray], np.ndarray] | None = None, budget: int = DEFAULT_BUDGET,
                 scored_of: Callable[[str, str], np.ndarray | None] | None = None) -> str:
    """The gallery section (heading, switch, strips, dialog, script) as one HTML string; '' without a scored run.

    Images come from `materials` (see `Materials`), or else from `serial_materials(original, submitted, scored,
    scored_of)`. The page depends only on the images, not on how they were made.
    """
    if materials is None:
        if original is None or submitted is None or scored is None:
            raise TypeError("gallery_html needs `materials`, or `original`, `submitted` and `scored`")
        materials = serial_materials(original, submitted, scored, scored_of)
    rows = {(r.run, r.image): r for r in result.scores}
    scored_runs = sorted({r.run for r in result.scores})
    if not scored_runs:
        return ""
    selected = [s.image for s in result.selection]
    picks = run_picks(result)
    # the page: (label, image, run or None) per cell, strip by strip
    strips: list[tuple[str, str, list[tuple[str | None, str, str | None]]]] = []
    for image in selected:
        strips.append(("image", image, [(None, image, None)] + [(None, image, run) for run in scored_runs
                                                                 if (run, image) in rows]))
    for p in picks:
        strips.append(("run", p.run, [c for label, image in (("lowest score", p.lowest), ("median score", p.median),
                                                             ("highest score", p.highest))
                                      for c in ((None, image, None), (label, image, p.run))]))
    shown_originals: dict[str, int] = {}  # image -> appearances (insertion order: first appearance)
    shown_pairs: dict[tuple[str, str], int] = {}
    for _, _, cells in strips:
        for _, image, run in cells:
            if run is None:
                shown_originals[image] = shown_originals.get(image, 0) + 1
            else:
                shown_originals.setdefault(image, 0)
                shown_pairs[(run, image)] = shown_pairs.get((run, image), 0) + 1
    # weights: an original's thumbnail + full size 2, a run's scored pair 1 and its difference pair 1 (per appearance)
    budget_ = _Budget(budget, 2 * sum(shown_originals.values()) + 2 * sum(shown_pairs.values()))
    hint: dict[str, int] = {}  # quality index per kind of image (`jpeg_within`)
    # pass 1, one decode per distinct image and pair: originals and scored versions encoded, d histogrammed per
    # run and kept (one byte per pixel, long side <= FULL_SIDE) for pass 2
    counts = {run: np.zeros(256, np.int64) for run in scored_runs}
    orig_uris: dict[str, tuple[str, str]] = {}
    run_uris: dict[tuple[str, str], tuple[str, str]] = {}
    kept: dict[tuple[str, str], np.ndarray] = {}
    plan = [(image, [run for (run, im) in shown_pairs if im == image]) for image in shown_originals]
    for (image, runs), (base, made) in zip(plan, materials(plan), strict=True):
        times = shown_originals[image]
        if times:
            orig_uris[image] = _pair(budget_, base.pixels, budget_.cap(2, times), hint, "original", times, base.thumb)
        del base
        for run in runs:
            t = shown_pairs[(run, image)]
            m = made[run]
            counts[run] += m.counts
            kept[(run, image)] = m.diff
            run_uris[(run, image)] = _pair(budget_, m.scored, budget_.cap(1, t), hint, f"scored {run}", t,
                                           m.scored_thumb)
        del made
    p99 = {run: percentile_of_counts(c) for run, c in counts.items()}
    # pass 2: the amplified difference maps
    diff_uris: dict[tuple[str, str], tuple[str, str]] = {}
    for (run, image), t in shown_pairs.items():
        amp = amplified(kept.pop((run, image)), p99[run])
        diff_uris[(run, image)] = _pair(budget_, amp, budget_.cap(1, t), hint, f"diff {run}", t)
        del amp
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
    for n, (kind, name, cells) in enumerate(strips):
        if n == len(selected):
            out.append("<h3>Per run: lowest, median and highest score</h3>")
        html_cells = []
        for label, image, run in cells:
            if run is None:
                html_cells.append(_original_cell(image, orig_uris[image], result.original_scores.get(image, math.nan)))
            else:
                html_cells.append(_run_cell(rows[(run, image)], run_uris[(run, image)], diff_uris[(run, image)],
                                            p99[run], label))
        if kind == "image":
            out.append(f"<h4>{_e(name)}</h4><div class='gstrip' role='group' aria-label='{_e(name)}: the "
                       f"original and every run'>" + "".join(html_cells) + "</div>")
        else:
            out.append(f"<h4>{_e(name)}</h4><div class='gstrip' role='group' aria-label='{_e(name)}: lowest, "
                       f"median and highest score'>" + "".join(html_cells) + "</div>")
    if len(strips) == len(selected):
        out.append("<h3>Per run: lowest, median and highest score</h3>")
    out.append("<dialog id='gview' class='gview' aria-label='Full-size image'><button type='button'>Close"
               "</button><img alt=''><p></p></dialog>")
    out.append(f"<script>{SCRIPT}</script>")
    return "\n".join(out)
