"""The result-table helpers of benchmarks/campaign.py: image choice, log statistics, doc regeneration."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import campaign as cp  # noqa: E402


def _png(path: Path, value: int) -> None:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _log(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_pick_first_spread_and_all():
    items = [Path(f"{i:02d}.png") for i in range(32)]
    assert [p.stem for p in cp.pick(items, 3, spread=False)] == ["00", "01", "02"]
    assert [p.stem for p in cp.pick(items, 8, spread=True)] == ["00", "04", "08", "12", "16", "20", "24", "28"]
    assert cp.pick(items, 0, spread=True) == items
    assert cp.pick(items, 99, spread=False) == items


def test_prepare_originals_copies_exactly_the_chosen(tmp_path: Path):
    data, dest = tmp_path / "data", tmp_path / "out" / "originals"
    data.mkdir()
    for i in range(5):
        _png(data / f"im{i}.png", i)
    (data / "manifest.csv").write_text("image\n")
    dest.mkdir(parents=True)
    _png(dest / "stale.png", 9)
    assert cp.prepare_originals(data, dest, 2) == ["im0", "im1"]
    assert sorted(p.name for p in dest.iterdir()) == ["im0.png", "im1.png"]
    assert (dest / "im1.png").read_bytes() == (data / "im1.png").read_bytes()


def test_prepare_originals_refuses_to_change_the_images_under_existing_runs(tmp_path: Path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for i in range(4):
        _png(data / f"im{i}.png", i)
    cp.prepare_originals(data, out / "originals", 4)
    (out / "runs" / "ifgsm").mkdir(parents=True)
    assert cp.prepare_originals(data, out / "originals", 4) == ["im0", "im1", "im2", "im3"]
    with pytest.raises(cp.CampaignError, match="another --out"):
        cp.prepare_originals(data, out / "originals", 2)
    assert len(list((out / "originals").glob("*.png"))) == 4


def test_prepare_originals_without_pngs_names_the_fix(tmp_path: Path):
    with pytest.raises(cp.CampaignError, match="evaluator.demo.demo_data"):
        cp.prepare_originals(tmp_path, tmp_path / "o", None)


def test_attack_stats_success_is_strictly_below_target():
    rows = [
        {"score_after": "49.99", "score_jpeg": "50.0", "psnr": "40", "seconds": "2"},
        {"score_after": "50.0", "score_jpeg": "10", "psnr": "inf", "seconds": "4"},
        {"score_after": "0", "score_jpeg": "29.9", "psnr": "30", "seconds": "3"},
        {"score_after": "31", "score_jpeg": "75", "psnr": "50", "seconds": "3"},
    ]
    st = cp.attack_stats(rows, 50.0)
    assert (st.p_png, st.p_jpeg) == (0.75, 0.5)
    assert st.psnr_log == pytest.approx(40.0)  # inf (unchanged image) left out
    assert st.seconds == pytest.approx(3.0)
    st30 = cp.attack_stats(rows, 30.0)
    assert (st30.p_png, st30.p_jpeg) == (0.25, 0.5)
    with pytest.raises(cp.CampaignError):
        cp.attack_stats([], 50.0)


def test_log_file_prefers_the_work_dir(tmp_path: Path):
    runs = tmp_path / "runs"
    row = [{"image": "a", "score_after": "1", "score_jpeg": "2", "psnr": "3", "seconds": "4"}]
    _log(runs / "r" / "log.csv", row)
    assert cp.log_file(runs, "r") == runs / "r" / "log.csv"
    _log(runs / ".pp-attack" / "r" / "log.csv", row * 2)
    assert cp.log_file(runs, "r") == runs / ".pp-attack" / "r" / "log.csv"
    assert len(cp.done_log_rows(runs, "r")) == 2
    assert cp.done_log_rows(runs, "missing") == []


def test_spec_argv_and_settings_text(tmp_path: Path):
    spec = cp.AttackSpec("pgd-dct-t30", "pgd-dct", (("iters", "10"),), target=30.0)
    argv = spec.argv(tmp_path / "o", tmp_path / "runs")
    assert argv[:2] == ["pp-attack", "pgd-dct"]
    assert argv[argv.index("--target") + 1] == "30"
    assert argv[argv.index("--set") + 1] == "iters=10"
    assert argv[argv.index("--out") + 1] == str(tmp_path / "runs" / "pgd-dct-t30")
    assert spec.settings_text() == "target=30, iters=10"
    assert cp.AttackSpec("x", "identity").settings_text() == "defaults"


def test_heavy_first_keeps_every_spec():
    specs = [cp.AttackSpec(m, m) for m in ("identity", "pgd-l2", "ifgsm", "pgd-dct")]
    ordered = cp.heavy_first(specs)
    assert [s.run for s in ordered][:2] == ["pgd-dct", "pgd-l2"]
    assert sorted(s.run for s in ordered) == sorted(s.run for s in specs)


def test_missing_results_csv_is_a_named_error(tmp_path: Path):
    with pytest.raises(cp.CampaignError, match="runs.csv"):
        cp.read_runs_csv(tmp_path)


def test_regenerating_a_doc_keeps_the_hand_written_notes(tmp_path: Path):
    doc = tmp_path / "d.md"
    assert cp.kept_notes(doc) == ""
    cp.write_atomic(doc, f"# old table\n\n{cp.NOTES_MARKER}\n\nmy discussion\n")
    assert cp.kept_notes(doc) == "my discussion\n"
    cp.write_atomic(doc, f"# new table\n\n{cp.NOTES_MARKER}\n{cp.kept_notes(doc)}")
    assert doc.read_text().endswith("my discussion\n") and "new table" in doc.read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_formatting():
    assert cp.pct("0.125") == "12.5%" and cp.pct(None) == "n/a"
    assert cp.num("inf") == "inf" and cp.num(1.23456, 3) == "1.235"
    assert cp.md_table(["a", "b"], [["1", "2"]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_transfer_ratio_compares_both_models_on_the_same_images_against_identity():
    """docs/reproduction.md's transfer column: one image set for both models (those both call high quality) and
    the identity run as the baseline, so a ratio never mixes sets of different size (values over 100% came from
    that) and never uses the originals' accuracy, which is 100% by construction."""
    import reproduction as rp

    def rows(clean: dict[str, float], after: dict[str, float]) -> list[dict[str, str]]:
        return [{"image": i, "score_clean": str(clean[i]), "score": str(after[i])} for i in clean]

    images = ["a", "b", "c", "d"]
    clean_b = dict.fromkeys(images, 90.0)
    clean_n = {"a": 80.0, "b": 70.0, "c": 40.0, "d": 30.0}          # niqe: only a and b are eligible
    scores_b = {"identity": rows(clean_b, dict.fromkeys(images, 85.0)),
                "run": rows(clean_b, {"a": 10.0, "b": 10.0, "c": 10.0, "d": 90.0})}
    scores_n = {"identity": rows(clean_n, {"a": 75.0, "b": 65.0, "c": 35.0, "d": 25.0}),
                "run": rows(clean_n, {"a": 20.0, "b": 60.0, "c": 30.0, "d": 20.0})}
    assert rp.common_images(scores_b, scores_n, 50.0) == {"a", "b"}
    runs = {r: {"status": "scored", "accuracy": "0.5", "abs_gain": "0.1", "mean_score": "40", "qualified": "false",
                **{c: "0" for c in rp.MSU_COLUMNS}} for r in ("identity", "run")}
    specs = {r: None for r in runs}
    _, transfer, clean = rp.section_msu(specs, {}, runs, runs, [], scores_b, scores_n, {})
    line = next(l for l in transfer.splitlines() if l.startswith("| `run`"))
    # on {a, b}: brisque identity 100% -> run 0% (reduction 1); niqe identity 100% -> run 50% (reduction 0.5)
    assert "| 0.0% | 50.0% |" in line and "| 50% |" in line
    assert "2 image(s)" in clean and "identity" in clean
