"""report.html: one self-contained page (inline CSS, inline SVG plots, base64 JPEG thumbnails), readable offline.

Sections: the gate (accuracy per run against the `gate.max_accuracy` line), score distributions per run (post-JPEG
BIQA scores as dots with a quartile box, against the threshold line, the clean originals on top), the runs table,
the jury selection with thumbnails, the camouflage gallery (`evaluator.outputs.report_gallery`: every run's
scored images, their difference maps), and the rules used. Every text that comes from a submission (run names,
error messages) is HTML-escaped; a run whose name looks like another's (`evaluator.intake.lookalike`) carries a warning in
the runs table that spells both names out. A red banner tops the report when the BIQA scored
with random weights (`--random-weights`: the scores are meaningless).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from evaluator.common.atomic import write_text_atomic
from evaluator.scoring.results import EvaluationResult


GREEN, ORANGE, GREY, RED, BLUE = "#1b9e77", "#d95f02", "#7f7f7f", "#c0392b", "#3465a4"
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4;position:sticky;top:0}td.l,th.l{text-align:left}tr.invalid td{background:#fff4f0}
tr.qualified td:first-child{border-left:4px solid #1b9e77}.err{color:#a33;text-align:left;max-width:520px;font-size:12px}
.note{color:#555;font-size:12.5px}.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:6px;background:#fafafa}figcaption{font-size:12px;color:#444}
svg text{font-family:system-ui,sans-serif}.warn{color:#b35c00}
.banner{border:3px solid #c0392b;background:#fdecea;color:#7b1d12;padding:.6em 1em;font-size:15px;margin:1em 0}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "&infin;"
        return f"{value:.{digits}f}"
    return _e(value)


def _pct(value: float) -> str:
    return "&ndash;" if math.isnan(value) else f"{100 * value:.1f}%"


# -- SVG primitives --------------------------------------------------------------------------------------------
def _svg(width: int, height: int, body: Sequence[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">' + "".join(body) + "</svg>")


def _line(x1: float, y1: float, x2: float, y2: float, color: str, width: float = 1, dash: str = "") -> str:
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
            f'stroke-width="{width}"{d}/>')


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11, color: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}">'
            f"{_e(text)}</text>")


def _short(name: str, n: int = 22) -> str:
    return name if len(name) <= n else name[: n - 1] + "\u2026"


def score_strips(rows: Sequence[tuple[str, Sequence[float], str]], threshold: float, title: str) -> str:
    """One horizontal strip per (label, scores 0..100, colour): jittered dots, quartile box, median, threshold line."""
    left, right, row_h, top = 170, 70, 34, 44
    plot_w = 560
    width, height = left + plot_w + right, top + row_h * len(rows) + 30
    x = lambda v: left + plot_w * min(max(v, 0.0), 100.0) / 100.0  # noqa: E731
    body = [_text(left, 16, title, size=12)]
    for tick in range(0, 101, 10):
        body.append(_line(x(tick), top - 4, x(tick), top + row_h * len(rows), "#eee"))
        body.append(_text(x(tick), height - 12, str(tick), "middle", 10, "#555"))
    for i, (label, scores, color) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        body.append(_text(left - 8, cy + 4, _short(label), "end"))
        vals = np.asarray(scores, dtype=float)
        if vals.size:
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            body.append(f'<rect x="{x(q1):.1f}" y="{cy - 10:.1f}" width="{max(x(q3) - x(q1), 1):.1f}" height="20" '
                        f'fill="{color}" fill-opacity="0.12" stroke="{color}" stroke-opacity="0.6"/>')
            body.append(_line(x(med), cy - 11, x(med), cy + 11, color, 2))
            for j, v in enumerate(vals):
                jitter = ((j * 7919) % 17 - 8) * 1.0  # deterministic spread, -8..8 px
                body.append(f'<circle cx="{x(v):.1f}" cy="{cy + jitter:.1f}" r="2.2" fill="{color}" '
                            f'fill-opacity="0.55"><title>{v:.2f}</title></circle>')
            low = float(np.mean(vals < threshold))
            body.append(_text(left + plot_w + 6, cy + 4, f"{100 * low:.0f}% low", size=10, color="#444"))
    body.append(_line(x(threshold), top - 6, x(threshold), top + row_h * len(rows), RED, 1.5, "5,3"))
    body.append(_text(x(threshold) + 4, top - 8, f"threshold {threshold:g}", size=10, color=RED))
    return _svg(width, height, body, title)


def accuracy_bars(rows: Sequence[tuple[str, float, bool]], gate: float, title: str) -> str:
    """Horizontal bars of accuracy (0..1) per run, green when qualified, with the gate line."""
    left, right, row_h, top = 170, 70, 22, 44
    plot_w = 480
    width, height = left + plot_w + right, top + row_h * max(len(rows), 1) + 30
    x = lambda v: left + plot_w * v  # noqa: E731
    body = [_text(left, 16, title, size=12)]
    for tick in range(0, 11, 2):
        body.append(_line(x(tick / 10), top - 4, x(tick / 10), top + row_h * len(rows), "#eee"))
        body.append(_text(x(tick / 10), height - 12, f"{tick * 10}%", "middle", 10, "#555"))
    for i, (label, acc, qualified) in enumerate(rows):
        y = top + row_h * i
        body.append(_text(left - 8, y + row_h / 2 + 4, _short(label), "end"))
        if math.isnan(acc):
            body.append(_text(left + 4, y + row_h / 2 + 4, "not scored", size=10, color=GREY))
            continue
        color = GREEN if qualified else ORANGE
        body.append(f'<rect x="{left}" y="{y + 4}" width="{max(x(acc) - left, 0.5):.1f}" height="{row_h - 8}" '
                    f'fill="{color}"><title>{100 * acc:.1f}%</title></rect>')
        body.append(_text(x(acc) + 4, y + row_h / 2 + 4, f"{100 * acc:.1f}%", size=10, color="#333"))
    body.append(_line(x(gate), top - 6, x(gate), top + row_h * len(rows), RED, 1.5, "5,3"))
    body.append(_text(x(gate) + 4, top - 8, f"gate: accuracy < {100 * gate:g}% qualifies", size=10, color=RED))
    return _svg(width, height, body, title)


def tradeoff_scatter(rows: Sequence[tuple[str, float, float, bool]], gate: float, title: str) -> str:
    """One labelled point per scored run: mean PSNR (x, at least 20..60 dB; identical images at the right edge)
    against accuracy (y, 0..1), with the gate line: the camouflage / fidelity trade-off at a glance."""
    left, top, plot_w, plot_h = 60, 30, 520, 220
    width, height = left + plot_w + 190, top + plot_h + 40
    finite = [p for _, p, a, _ in rows if math.isfinite(p) and not math.isnan(a)]
    lo = min([20.0] + [10.0 * math.floor(p / 10.0) for p in finite])
    hi = max([60.0] + [10.0 * math.ceil(p / 10.0) for p in finite])
    x = lambda v: left + plot_w * (min(max(v, lo), hi) - lo) / (hi - lo)  # noqa: E731
    y = lambda a: top + plot_h * (1.0 - a)  # noqa: E731
    body = [_text(left, 16, title, size=12),
            f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>']
    for db in range(int(lo), int(hi) + 1, 10):
        body.append(_line(x(db), top, x(db), top + plot_h, "#eee"))
        body.append(_text(x(db), top + plot_h + 14, f"{db} dB", "middle", 10, "#555"))
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(_text(left - 6, y(a) + 4, f"{100 * a:.0f}%", "end", 10, "#555"))
    body.append(_line(left, y(gate), left + plot_w, y(gate), RED, 1.5, "5,3"))
    body.append(_text(left + plot_w + 4, y(gate) + 4, "gate", size=10, color=RED))
    body.append(_text(left + plot_w / 2, height - 6, "mean PSNR vs original (higher = closer)", "middle", 10, "#555"))
    for label, psnr_db, acc, qualified in rows:
        if math.isnan(acc) or math.isnan(psnr_db):
            continue
        px, py = x(psnr_db if math.isfinite(psnr_db) else hi), y(acc)
        color = GREEN if qualified else ORANGE
        body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{color}"><title>{_e(label)}: '
                    f"PSNR {psnr_db:.2f} dB, accuracy {100 * acc:.1f}%</title></circle>")
        body.append(_text(px + 7, py + 4, _short(label, 18), size=10))
    return _svg(width, height, body, title)


# -- the page ---------------------------------------------------------------------------------------------------
RUN_TABLE = (
    ("run", "run"), ("status", "status"), ("n_images", "images"), ("accuracy", "accuracy"),
    ("accuracy_reduction", "acc. reduction"), ("qualified", "qualified"), ("mean_score", "mean score"),
    ("abs_gain", "abs gain"), ("rel_gain", "rel gain"), ("robustness_score", "robustness"),
    ("wasserstein_score", "Wasserstein"), ("energy_score", "energy"), ("psnr", "PSNR dB"), ("ssim", "SSIM"),
)


def _runs_table(result: EvaluationResult) -> str:
    head = "".join(f'<th class="{"l" if k in ("run", "status") else ""}">{_e(t)}</th>' for k, t in RUN_TABLE)
    out = [f"<table><thead><tr>{head}<th class='l'>errors, warnings</th></tr></thead><tbody>"]
    for r in result.runs:
        cls = "invalid" if r.status == "invalid" else ("qualified" if r.qualified else "")
        cells = []
        for key, _ in RUN_TABLE:
            v = getattr(r, key)
            if key in ("accuracy", "accuracy_reduction"):
                cells.append(f"<td>{_pct(v)}</td>")
            elif key in ("run", "status"):
                cells.append(f'<td class="l">{_e(v)}</td>')
            elif key == "psnr":
                cells.append(f"<td>{_fmt(v, 2)}</td>")
            else:
                cells.append(f"<td>{_fmt(v, 4 if key == 'ssim' else 3)}</td>")
        errors = "<br>".join(_e(p) for p in r.error.split(" | ")) if r.error else ""
        if r.warning:
            errors += ("<br>" if errors else "") + f'<span class="warn">warning: {_e(r.warning)}</span>'
        out.append(f'<tr class="{cls}">{"".join(cells)}<td class="err">{errors}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _selection(result: EvaluationResult, thumbnails: Mapping[str, bytes]) -> str:
    if not result.selection:
        return '<p class="note">No image selected (no scored run).</p>'
    by_image: dict[str, list[float]] = {}
    for row in result.scores:
        by_image.setdefault(row.image, []).append(row.score)
    figs = []
    for s in result.selection:
        img = ""
        if s.image in thumbnails:
            b64 = base64.b64encode(thumbnails[s.image]).decode("ascii")
            img = f'<img src="data:image/jpeg;base64,{b64}" alt="{_e(s.image)}" width="192"><br>'
        scores = by_image.get(s.image, [])
        span = f"{min(scores):.1f}..{max(scores):.1f}" if scores else "&ndash;"
        figs.append(f"<figure>{img}<figcaption>#{s.rank} <b>{_e(s.image)}</b><br>variance {s.variance:.1f}, "
                    f"scores {span}, clean {result.original_scores.get(s.image, math.nan):.1f}</figcaption></figure>")
    return '<div class="gallery">' + "".join(figs) + "</div>"


def _random_weights_banner(model: Mapping[str, Any]) -> str:
    """A red banner when the BIQA scored with random weights (task.json model.random_weights_seed set), else ''."""
    seed = model.get("random_weights_seed")
    if seed is None:
        return ""
    return (f"<div class='banner' role='alert'><b>RANDOM BIQA WEIGHTS &mdash; these scores are meaningless.</b> "
            f"{_e(model.get('name', '?'))} scored with a randomly initialized network (--random-weights {_e(seed)}), "
            "not with its trained weights file. Do not publish or compare these numbers; for real scores pass "
            "--biqa-weights.</div>")


def render_report(result: EvaluationResult, meta: Mapping[str, Any], thumbnails: Mapping[str, bytes],
                  gallery: str = "", sections: Sequence[str] = ()) -> str:
    """The report page as one HTML string (no external resource); `gallery`: the camouflage gallery section
    (`evaluator.outputs.report_gallery.gallery_html`), placed after the jury selection; `sections` (finished
    HTML, e.g. the survival matrix of `evaluator.outputs.report_survival`) go after it, before the rules."""
    scored = [r for r in result.runs if r.status == "scored"]
    by_run: dict[str, list[float]] = {r.run: [] for r in scored}
    excluded = set(result.excluded_originals)
    for row in result.scores:
        if row.image not in excluded:
            by_run[row.run].append(row.score)
    clean = [v for k, v in sorted(result.original_scores.items()) if k not in excluded]
    strips = [("originals (clean)", clean, BLUE)] + [
        (r.run, by_run[r.run], GREEN if r.qualified else ORANGE) for r in scored]
    model = meta.get("model", {})
    n_q = sum(r.qualified for r in result.runs)
    n_inv = sum(r.status == "invalid" for r in result.runs)
    excl = ""
    if result.excluded_originals:
        items = ", ".join(f"{_e(i)} ({result.original_scores[i]:.1f})" for i in result.excluded_originals)
        excl = (f'<p class="note"><b>{len(result.excluded_originals)} original(s) below the threshold</b>, left out '
                f"of every per-run number (the test set is defined as high quality): {items}</p>")
    jury_note = (f"{result.jury_candidates} qualified run(s) = candidates per image; jurors pick "
                 f"{result.picks.most} most and {result.picks.least} least appealing.")
    if result.jury_note and result.jury_candidates:
        jury_note += " " + _e(result.jury_note) + "."
    rules = _e(json.dumps(meta.get("rules", {}), sort_keys=True))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>Pixel Privacy evaluation</title><style>{CSS}</style></head><body>",
        "<h1>Pixel Privacy: quality camouflage evaluation</h1>",
        _random_weights_banner(model),
        f"<p>{len(result.runs)} run(s): {len(scored)} scored, {n_inv} invalid, <b>{n_q} qualified</b>. "
        f"BIQA <b>{_e(model.get('name', '?'))}</b> (model sha256 {_e(str(model.get('sha256', ''))[:16])}&hellip;), "
        f"threshold {result.threshold:g}; submitted images are JPEG-compressed by the organizer codec "
        f"({_e(json.dumps(meta.get('codec', {})))}) before scoring. "
        f"Originals: {len(result.original_scores)}, accuracy on "
        f"the high-quality ones {_pct(result.original_accuracy)}.</p>",
        excl,
        "<h2>The gate</h2><p class='note'>Accuracy = share of images the BIQA still calls high quality after JPEG "
        f"(score &ge; {result.threshold:g}). A run qualifies for the jury iff accuracy &lt; "
        f"{100 * result.max_accuracy:g}%.</p>",
        accuracy_bars([(r.run, r.accuracy, r.qualified) for r in result.runs], result.max_accuracy,
                      "accuracy after JPEG per run"),
        "<h2>Score distributions</h2><p class='note'>One dot per image: BIQA score of the submitted image after "
        "JPEG (originals: clean). Box = quartiles, thick line = median, dashed line = threshold; green = qualified "
        "run. Hover a dot for its value.</p>",
        score_strips(strips, result.threshold, "post-JPEG BIQA score (0..100, higher = better quality)"),
        "<h2>Camouflage vs fidelity</h2><p class='note'>Each scored run: accuracy after JPEG (lower = stronger "
        "camouflage) against the mean PSNR of its submitted images (higher = closer to the originals).</p>",
        tradeoff_scatter([(r.run, r.psnr, r.accuracy, r.qualified) for r in scored], result.max_accuracy,
                         "accuracy vs mean PSNR per run"),
        "<h2>Runs</h2><p class='note'>Robustness scores (MSU benchmark) on s = clean/100, p = post-JPEG/100; "
        "larger = stronger camouflage for gains and distances. PSNR and SSIM: submitted image vs original "
        "(before the organizer JPEG). &infin; = identical to the original.</p>",
        _runs_table(result),
        f"<h2>Jury selection</h2><p class='note'>The {len(result.selection)} image(s) whose post-JPEG scores vary "
        f"most across the scored runs (population variance, ties by image id). {jury_note}</p>",
        _selection(result, thumbnails),
        gallery,
        *sections,
        f"<h2>Rules and versions</h2><p class='note'>rules: {rules}<br>"
        f"versions: {_e(json.dumps(meta.get('versions', {})))}"
        f"<br>created: {_e(meta.get('created', ''))}</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(path: str | Path, result: EvaluationResult, meta: Mapping[str, Any],
                 thumbnails: Mapping[str, bytes], gallery: str = "", sections: Sequence[str] = ()) -> None:
    """Write `render_report(...)` to `path` atomically."""
    write_text_atomic(path, render_report(result, meta, thumbnails, gallery, sections))
