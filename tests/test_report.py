"""evaluator.outputs.report: the hand-drawn SVG plots are well-formed, escape names, and draw what they are given."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from evaluator.outputs.report import accuracy_bars, score_strips

SVG = "{http://www.w3.org/2000/svg}"
NASTY = 'run "<&>" \'x\''


def test_score_strips_draw_one_dot_per_score_and_the_threshold_line():
    svg = score_strips([("originals", [70.0, 80.0, 90.0], "#000"), (NASTY, [10.0, 55.0], "#111")], 50.0, "t")
    root = ET.fromstring(svg)  # well-formed XML despite the run name
    assert len(root.findall(f".//{SVG}circle")) == 5
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "threshold 50" in texts and "50% low" in texts and "0% low" in texts
    assert any(t and t.startswith('run "<&>"') for t in texts)
    dashed = [ln for ln in root.iter(f"{SVG}line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 1


def test_scores_outside_0_100_stay_inside_the_plot():
    root = ET.fromstring(score_strips([("r", [-20.0, 140.0], "#000")], 50.0, "t"))
    xs = [float(c.get("cx")) for c in root.iter(f"{SVG}circle")]
    width = float(root.get("width"))
    assert all(0 < x < width for x in xs) and xs[0] < xs[1]


def test_accuracy_bars_mark_unscored_runs_and_the_gate():
    svg = accuracy_bars([("a", 0.25, True), ("b", 0.75, False), (NASTY, math.nan, False)], 0.5, "acc")
    root = ET.fromstring(svg)
    rects = root.findall(f".//{SVG}rect")
    assert len(rects) == 2
    assert rects[0].get("fill") != rects[1].get("fill")  # qualified and not qualified differ
    assert float(rects[1].get("width")) == 3 * float(rects[0].get("width"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "not scored" in texts and "gate: accuracy < 50% qualifies" in texts


def test_tradeoff_scatter_places_runs_by_psnr_and_accuracy():
    from evaluator.outputs.report import tradeoff_scatter

    svg = tradeoff_scatter([("near", 50.0, 0.9, False), ("far", 30.0, 0.1, True), ("same", math.inf, 1.0, False),
                            ("unscored", math.nan, math.nan, False)], 0.5, "t")
    root = ET.fromstring(svg)
    dots = {c.find(f"{SVG}title").text.split(":")[0]: (float(c.get("cx")), float(c.get("cy")))
            for c in root.iter(f"{SVG}circle")}
    assert set(dots) == {"near", "far", "same"}
    assert dots["far"][0] < dots["near"][0] < dots["same"][0]  # x grows with PSNR, inf at the right edge
    assert dots["far"][1] > dots["near"][1]  # lower accuracy is drawn lower
