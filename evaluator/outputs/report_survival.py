"""The report's survival section (`pp-evaluate --matrix`): which camouflage survives which pre-processing and model.

- One heatmap per BIQA (an HTML table coloured per cell): accuracy of each run (rows) under each defense (columns);
  green = qualified (accuracy < gate), orange shades = not qualified (darker = higher accuracy), grey = error.
  Rows are sorted most robust first: most defenses under which the run qualifies, then lowest mean accuracy; a
  first row scores the originals themselves, unattacked (`MatrixResult.baseline`): where it is green the
  pre-processing alone makes the model call the images low quality, and a run qualifying there shows no camouflage.
- One sentence per run naming the defenses that break it (the run no longer qualifies), for the model the run
  attacked (run.json `biqa`) when it is in the matrix, else the task's model, and those under which the
  unattacked originals qualify too.
- The transfer table: per run, the model it attacked and its accuracy under the official pre-processing with every
  BIQA of the matrix (attacked model -> other models).
Every name that comes from a submission (run names, run.json's model, error messages) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from evaluator.scoring.matrix import Cell, MatrixResult

GREEN, GREY = "#1b9e77", "#bbbbbb"
BASELINE_LABEL = "originals (no attack)"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _pct(value: float) -> str:
    return "&ndash;" if math.isnan(value) else f"{100 * value:.0f}%"


def _colour(cell: Cell) -> str:
    """Green when qualified; else orange, lighter for lower accuracy (closer to the gate); grey for an error."""
    if cell.error:
        return GREY
    if cell.qualified:
        return GREEN
    a = 0.0 if math.isnan(cell.accuracy) else min(max(cell.accuracy, 0.0), 1.0)
    light = int(round(225 - 90 * a))  # 225 (pale) .. 135 (deep) in the green and blue channels
    return f"#f0{light:02x}{max(light - 90, 20):02x}"


def robustness_order(result: MatrixResult, model: str) -> list[str]:
    """Runs most robust first: most defenses where the run qualifies with `model`, then lowest mean accuracy, name."""
    def key(run: str) -> tuple[int, float, str]:
        cells = [result.cell(run, d, model) for d in result.defenses]
        accs = [c.accuracy for c in cells if not c.error and not math.isnan(c.accuracy)]
        return (-sum(c.qualified for c in cells), sum(accs) / len(accs) if accs else math.inf, run)

    return sorted(result.runs, key=key)


def _heatmap(result: MatrixResult, model: str) -> str:
    head = "".join(f"<th>{_e(d)}{' *' if d == result.official_defense else ''}</th>" for d in result.defenses)
    rows = ([_baseline_row(result, [(d, model) for d in result.defenses], after="<td></td>")]
            if result.baseline else [])
    for run in robustness_order(result, model):
        tds = []
        for d in result.defenses:
            c = result.cell(run, d, model)
            tip = (c.error if c.error else f"{run} | {d} | {model}: accuracy {_pct(c.accuracy)} of {c.n_images} "
                   f"images, mean score {c.mean_score:.1f}{', qualified' if c.qualified else ''}")
            text = "error" if c.error else _pct(c.accuracy)
            colour = "#fff" if c.qualified and not c.error else "#222"
            tds.append(f'<td style="background:{_colour(c)};color:{colour}" title="{_e(tip)}">{text}</td>')
        n_q = sum(result.cell(run, d, model).qualified for d in result.defenses)
        rows.append(f'<tr><td class="l">{_e(run)}</td>{"".join(tds)}<td>{n_q}/{len(result.defenses)}</td></tr>')
    return (f"<h3>{_e(model)}{' (task model)' if model == result.task_model else ''}</h3>"
            f"<table class='survival'><thead><tr><th class='l'>run</th>{head}<th>qualifies</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _td(c: Cell, tip: str, mark: str = "") -> str:
    colour = "#fff" if c.qualified and not c.error else "#222"
    return (f'<td style="background:{_colour(c)};color:{colour};{mark}" title="{_e(c.error or tip)}">'
            f'{"error" if c.error else _pct(c.accuracy)}</td>')


def _baseline_row(result: MatrixResult, pairs: Sequence[tuple[str, str]], before: str = "", after: str = "") -> str:
    """The originals themselves, unattacked (`MatrixResult.baseline`), one cell per (defense, model) of `pairs`:
    where they are green, the pre-processing alone makes the model call the images low quality."""
    tds = []
    for d, m in pairs:
        c = result.base(d, m)
        tds.append("<td>&ndash;</td>" if c is None else
                   _td(c, f"the originals, unattacked | {d} | {m}: accuracy {_pct(c.accuracy)} of {c.n_images} images"))
    return f'<tr><td class="l"><i>{BASELINE_LABEL}</i></td>{before}{"".join(tds)}{after}</tr>'


def _sentence_model(result: MatrixResult, run: str) -> str:
    target = result.targets.get(run, "")
    return target if target in result.models else result.task_model if result.task_model in result.models \
        else result.models[0]


def _label(defense: str) -> str:
    """A defense as a sentence names it: 'none' alone would read as "no defense" ("survives none")."""
    return "none (no pre-processing)" if defense == "none" else defense


def run_sentence(result: MatrixResult, run: str) -> str:
    """One plain-text sentence: under which defenses `run` stops qualifying (for its attacked model)."""
    model = _sentence_model(result, run)
    cells = {d: result.cell(run, d, model) for d in result.defenses}
    broken = [_label(d) for d, c in cells.items() if not c.error and not c.qualified]
    kept = [_label(d) for d, c in cells.items() if not c.error and c.qualified]
    failed = [_label(d) for d, c in cells.items() if c.error]
    tail = f" ({len(failed)} defense(s) failed: {', '.join(failed)})" if failed else ""
    hollow = [_label(d) for d, c in cells.items() if c.qualified and not c.error
              and (b := result.base(d, model)) is not None and b.qualified and not b.error]
    if hollow:  # the pre-processing alone qualifies the unattacked originals: no evidence of a camouflage
        tail += f" (the unattacked originals qualify under {', '.join(hollow)} too)"
    if not kept:
        return f"{run} ({model}): qualifies under no defense{tail}."
    if not broken:
        return f"{run} ({model}): survives every defense{tail}."
    return f"{run} ({model}): broken by {', '.join(broken)}; survives {', '.join(kept)}{tail}."


def _transfer(result: MatrixResult) -> str:
    d = result.official_defense
    if d not in result.defenses:
        return (f"<p class='note'>No transfer table: the official pre-processing {_e(d)} is not among the matrix's "
                "defenses.</p>")
    head = "".join(f"<th>{_e(m)}</th>" for m in result.models)
    rows = [_baseline_row(result, [(d, m) for m in result.models], before="<td></td>")] if result.baseline else []
    for run in result.runs:
        target = result.targets.get(run, "")
        tds = []
        for m in result.models:
            c = result.cell(run, d, m)
            mark = " outline:2px solid #222;outline-offset:-3px;" if m == target else ""
            colour = "#fff" if c.qualified and not c.error else "#222"
            tds.append(f'<td style="background:{_colour(c)};color:{colour};{mark}" title="{_e(c.error)}">'
                       f'{"error" if c.error else _pct(c.accuracy)}</td>')
        rows.append(f'<tr><td class="l">{_e(run)}</td><td class="l">{_e(target) or "&ndash;"}</td>{"".join(tds)}</tr>')
    return (f"<h3>Transfer: attacked model &rarr; other models (under {_e(d)})</h3>"
            "<p class='note'>Accuracy under the official pre-processing with each BIQA, each over the originals it "
            "calls high quality (n_images differs per model: matrix.csv); the outlined cell is the model the run "
            "attacked (run.json <code>biqa</code>); green = would qualify with that model.</p>"
            f"<table class='survival'><thead><tr><th class='l'>run</th><th class='l'>attacked</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def survival_section(result: MatrixResult) -> str:
    """The report's survival section (HTML) for one matrix."""
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in result.notes)
    if not result.runs:
        return f"<h2>Survival matrix</h2><p class='note'>No scored run: no matrix.</p>{notes}"
    maps = "".join(_heatmap(result, m) for m in result.models)
    sentences = "".join(f"<li>{_e(run_sentence(result, r))}</li>" for r in robustness_order(result, result.models[0]))
    return (
        "<h2>Survival matrix</h2><p class='note'>Accuracy of every scored run (share of the images a BIQA still calls "
        f"high quality, score &ge; {result.threshold:g}) after each organizer-side pre-processing (columns), for each "
        f"BIQA; green = qualified (accuracy &lt; {100 * result.max_accuracy:g}%). * = the official pre-processing "
        f"({_e(result.official_defense)}): with the task model ({_e(result.task_model)}) that column is runs.csv. "
        f"Rows: most robust camouflage on top; the first row ({BASELINE_LABEL}) scores the originals themselves: "
        "where it is green, the pre-processing alone makes the model call the images low quality, so a run "
        "qualifying there shows no camouflage. Full numbers: matrix.csv (runs only).</p>"
        f"{notes}<style>table.survival td{{text-align:center;min-width:3.2em}}</style>{maps}"
        f"<h3>What breaks each run</h3><ul>{sentences}</ul>{_transfer(result)}"
    )


def survival_sections(result: MatrixResult) -> Sequence[str]:
    return (survival_section(result),)
