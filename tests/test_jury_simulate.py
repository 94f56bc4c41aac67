"""The simulated jury casts real ballots through the store, and its documented preference shows in the ranking."""

import io
import json
import secrets

import numpy as np
import pytest
from PIL import Image

from evaluator.contracts.jury_package import load_package
from jury_app.testing.simulate import main, simulate
from jury_app.votes.store import VoteStore

RUNS = {"clean": 0.0, "mild": 6.0, "medium": 14.0, "heavy": 30.0, "worst": 50.0}


@pytest.fixture()
def package(tmp_path):
    """3 photos x 5 runs; each run adds Gaussian noise of its own strength, so SSIM orders the runs."""
    from skimage import data

    originals = tmp_path / "originals"
    jury = tmp_path / "jury"
    (jury / "images").mkdir(parents=True)
    originals.mkdir()
    rng = np.random.default_rng(0)
    photo = data.astronaut()
    manifest = {"version": 1, "task": {"most": 3, "least": 2, "show_original": False}, "images": []}
    key = {"candidates": {}}
    for i in range(3):
        image = f"img{i}"
        rgb = np.ascontiguousarray(photo[i * 100 : i * 100 + 96, 100:228])
        Image.fromarray(rgb).save(originals / f"{image}.png")
        entry = {"image": image, "original": None, "candidates": []}
        for run, sigma in RUNS.items():
            noisy = np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)
            cid = secrets.token_hex(8)
            buf = io.BytesIO()
            Image.fromarray(noisy).save(buf, "JPEG", quality=90)
            (jury / "images" / f"{cid}.jpg").write_bytes(buf.getvalue())
            entry["candidates"].append({"id": cid, "file": f"images/{cid}.jpg"})
            key["candidates"][cid] = {"run": run, "image": image}
        manifest["images"].append(entry)
    (jury / "manifest.json").write_text(json.dumps(manifest))
    (jury / "key.json").write_text(json.dumps(key))
    return jury, originals


def test_simulated_jurors_vote_through_the_store_and_prefer_faithful_versions(package):
    jury, originals = package
    cast = simulate(jury, originals, jurors=4, sigma=0.0, seed=1)
    assert cast == 4 * 3
    store = VoteStore(load_package(jury))
    assert store.count_ballots() == 12
    assert all(j.finalized for j in store.jurors())
    key = json.loads((jury / "key.json").read_text())["candidates"]
    most = {run: 0 for run in RUNS}
    least = {run: 0 for run in RUNS}
    for row in store.votes():
        (most if row.choice == "most" else least)[key[row.candidate]["run"]] += 1
    # noise-free preference for SSIM: the three least noisy runs are always "most", the two noisiest "least"
    assert most == {"clean": 12, "mild": 12, "medium": 12, "heavy": 0, "worst": 0}
    assert least == {"clean": 0, "mild": 0, "medium": 0, "heavy": 12, "worst": 12}


def test_noise_makes_jurors_disagree(package):
    jury, originals = package
    simulate(jury, originals, jurors=6, sigma=0.5, seed=3)
    votes = sorted((r.juror, r.image, r.candidate, r.choice) for r in VoteStore(load_package(jury)).votes())
    per_juror = {}
    for juror, image, cand, choice in votes:
        per_juror.setdefault(juror, set()).add((image, cand, choice))
    assert len({frozenset(v) for v in per_juror.values()}) > 1  # not all jurors identical


def test_missing_original_is_a_clear_error(package, tmp_path):
    jury, _ = package
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no original img0"):
        simulate(jury, empty, jurors=1)


def test_command_line_names_the_store_it_filled(package, capsys):
    jury, originals = package
    assert main([str(jury), "--originals", str(originals), "--jurors", "2"]) == 0
    store = load_package(jury).store_path
    assert capsys.readouterr().out.strip().endswith(f"cast 6 ballots into {store}")
    assert VoteStore(load_package(jury)).count_ballots() == 6


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pp_jury_simulate_runs_as_several_processes_on_one_store(package, request, backend, tmp_path):
    """`pp-jury simulate` (three processes at once) on one store: each adds its own labelled jurors; every ballot
    lands, finalized, and the store holds no juror twice."""
    import subprocess
    import sys

    jury, originals = package
    url = (f"sqlite:///{tmp_path / 'shared.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url"))
    procs = [subprocess.Popen([sys.executable, "-m", "jury_app.cli", "simulate", str(jury), "--originals",
                               str(originals), "--jurors", "3", "--seed", str(k), "--store", url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all(o.startswith("SIMULATED jury: 3 scripted jurors cast 9 ballots into ") for o, _ in outs)
    from jury_app.votes.backends import open_store

    store = open_store(load_package(jury), url)
    jurors = store.jurors()
    assert [j.juror for j in jurors] == [f"simulated{k:03d}" for k in range(1, 10)]
    assert all(j.finalized and j.ballots == 3 for j in jurors) and store.count_ballots() == 27
    assert not (jury / "votes.sqlite").exists()
    store.close()


def test_simulate_refuses_a_store_with_real_jurors_and_rank_labels_simulated_ballots(package, capsys):
    """Scripted ballots must never mix unnoticed with people's: `pp-jury simulate` refuses a store that already
    has non-simulated jurors (nothing is added), and `pp-jury rank` says when simulated ballots are counted."""
    from jury_app.cli import main as pp_jury

    jury, originals = package
    args = ["simulate", str(jury), "--originals", str(originals), "--jurors", "2"]
    assert pp_jury(args) == 0
    assert pp_jury(["rank", str(jury)]) == 0
    err = capsys.readouterr().err
    assert "6 ballot(s) of 2 SIMULATED juror(s)" in err and "simulated001" in err
    store = VoteStore(load_package(jury))
    store.add_jurors(1)  # a person: juror001
    before = [j.juror for j in store.jurors()]
    assert pp_jury(args) == 2
    err = capsys.readouterr().err
    assert "juror001" in err and "copy of the package" in err
    assert [j.juror for j in store.jurors()] == before and store.count_ballots() == 6
