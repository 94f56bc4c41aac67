"""detailed_results.html of the Codabench scorer: one self-contained page per submission.

Codabench shows `OUTPUT/detailed_results.html` beside a submission when competition.yaml has
`enable_detailed_results: true` (the bundle of `pp-evaluate codabench-bundle` sets it); the scorer writes it for
every submission (a placeholder while scoring, then the result), so the page is never stale:
- a scored run: its scores, the per-image table (clean score, score after JPEG, low quality, PSNR, SSIM) and a
  gallery of the run: a small JPEG thumbnail of each original next to the image that was scored (the submitted
  image after the organizer's JPEG), at most `GALLERY_MAX` images (by image id; the table lists them all);
- an invalid run: every problem found (file, what is wrong, what to do).
Every string that comes from a submission (run name, problems) is HTML-escaped; images are data URIs, so the page
opens offline and loads nothing.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from evaluator.common.atomic import write_text_atomic

DETAILED_RESULTS_HTML = "detailed_results.html"
GALLERY_MAX = 60
THUMB_WIDTH = 160
_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:12.5px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;border:1px solid #ddd;padding:5px;background:#fafafa}
figcaption{font-size:12px;color:#444}.low{color:#1b7e5a}.high{color:#a33}.err{color:#a33}
.banner{border:3px solid #c0392b;background:#fdecea;color:#7b1d12;padding:.5em 1em;margin:1em 0}"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float) and math.isinf(value):
        return "&infin;"
    return f"{value:.{digits}f}"


def thumbnail_uri(rgb: np.ndarray, width: int = THUMB_WIDTH, quality: int = 80) -> str:
    """A `data:image/jpeg;base64,...` thumbnail `width` pixels wide (never wider than the image)."""
    from PIL import Image

    im = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def render_pending(run: str) -> str:
    """The placeholder the scorer writes first (Codabench shows the page while the scorer runs)."""
    return _page("Scoring", f"<h1>Scoring {_e(run)}</h1><p>The submission is being validated and scored.</p>")


def render_invalid(run: str, problems: Sequence[str]) -> str:
    items = "".join(f"<li>{_e(p)}</li>" for p in problems)
    return _page(f"Invalid: {run}", f"<h1>Invalid submission: {_e(run)}</h1><p class=err>Nothing was scored. "
                 f"Fix every problem below and submit again.</p><ul>{items}</ul>")


def render_scored(run: str, scores: Mapping[str, float | int | None], rows: Sequence[object], threshold: float,
                  jpeg_quality: int, thumbnails: Mapping[str, tuple[str, str]], warning: str | None = None) -> str:
    """The page of a scored run. `rows`: its `ImageScore`s; `thumbnails`: image -> (original URI, scored URI)."""
    parts = [f"<h1>Detailed results: {_e(run)}</h1>"]
    if warning:
        parts.append(f'<div class="banner"><b>RANDOM BIQA WEIGHTS</b>: {_e(warning)}</div>')
    parts.append("<h2>Scores</h2><table><tr><th class=l>key</th><th>value</th></tr>")
    parts.extend(f"<tr><td class=l>{_e(k)}</td><td>{_num(v, 4) if isinstance(v, float) else _e(v)}</td></tr>"
                 for k, v in scores.items())
    parts.append("</table>")
    low = sum(bool(r.low_quality) for r in rows)
    parts.append(f"<h2>Images</h2><p>{len(rows)} images; {low} scored below the threshold {threshold:g} after "
                 f"JPEG-{jpeg_quality} (low quality: the camouflage worked).</p>")
    parts.append("<table><tr><th class=l>image</th><th>score, original</th><th>score after JPEG</th>"
                 "<th class=l>BIQA says</th><th>PSNR (dB)</th><th>SSIM</th></tr>")
    for r in rows:
        verdict = '<span class="low">low</span>' if r.low_quality else '<span class="high">high</span>'
        parts.append(f"<tr><td class=l>{_e(r.image)}</td><td>{_num(r.score_clean, 2)}</td><td>{_num(r.score, 2)}</td>"
                     f"<td class=l>{verdict}</td><td>{_num(r.psnr, 2)}</td><td>{_num(r.ssim, 4)}</td></tr>")
    parts.append("</table>")
    if thumbnails:
        shown = [r for r in rows if r.image in thumbnails]
        more = f" (the first {len(shown)} of {len(rows)} by image id)" if len(shown) < len(rows) else ""
        parts.append(f"<h2>Gallery</h2><p>Left: the original. Right: the submitted image after the organizer's "
                     f"JPEG-{jpeg_quality}, as the BIQA scored it{more}.</p><div class=gallery>")
        for r in shown:
            original, scored = thumbnails[r.image]
            parts.append(f'<figure><img src="{_e(original)}" alt="original {_e(r.image)}"> '
                         f'<img src="{_e(scored)}" alt="scored {_e(r.image)}"><figcaption>{_e(r.image)}: '
                         f"{_num(r.score_clean, 1)} &rarr; {_num(r.score, 1)} "
                         f"({'low' if r.low_quality else 'high'}), SSIM {_num(r.ssim, 3)}</figcaption></figure>")
        parts.append("</div>")
    return _page(f"Detailed results: {run}", "\n".join(parts))


def gallery_thumbnails(run_path: Path, ref: Path, images: Sequence[str], codec: object,
                       limit: int = GALLERY_MAX) -> dict[str, tuple[str, str]]:
    """(original, scored) thumbnail URIs of the first `limit` images: the run is read back through the intake
    (`validate_run`, the same checks), each submitted image compressed with the organizer `codec` and decoded."""
    from evaluator.common.imageio import load_rgb
    from evaluator.intake.runs import index_originals, validate_run

    chosen = sorted(images)[:limit]
    if not chosen:
        return {}
    run = validate_run(run_path, index_originals(ref), decode=False)
    out: dict[str, tuple[str, str]] = {}
    for image in chosen:
        if image not in run.images:
            continue
        scored = codec.decompress(codec.compress(run.images[image].load()))
        out[image] = (thumbnail_uri(load_rgb(ref / f"{image}.png")), thumbnail_uri(scored))
    return out


def write_page(path: Path, text: str) -> None:
    write_text_atomic(path, text)
