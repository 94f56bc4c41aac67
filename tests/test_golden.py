"""Golden outputs: the whole flow on a tiny fixed case, compared with `tests/golden/pipeline.json` byte for byte.

originals (5 real photos at 128x96, and one blurred below the threshold) -> pp-attack (noise, jpeg, fgsm,
identity; one run shipped as a zip again) plus a hand-made invalid run -> pp-evaluate (default BRISQUE, task
rules in TASK_TOML) -> the Codabench scoring program on one run -> pp-jury rank on scripted votes. Every output is
hashed as the bytes written, with only its volatile values replaced in place (`volatile_json`: time stamps, the
library versions' object, a run's mean seconds, the temporary folder; the CSV log's seconds column), so a change of
key order, indentation or number format shows; the jury's random candidate ids are drawn from a seeded generator
(`seeded_ids`). The test fails naming each output whose hash changed. A refactoring must leave every hash as it is.

After an intended change of an output, regenerate the fixture and say why in the commit:
    PP_GOLDEN_UPDATE=1 python -m pytest -q tests/test_golden.py
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

FIXTURE = Path(__file__).parent / "golden" / "pipeline.json"
PHOTOS = ("astronaut.png", "motorcycle_left.png", "rocket.jpg", "chelsea.png", "coffee.png")
SIZE = (128, 96)
TASK_TOML = """\
[selection]
images = 3

[jury]
most = 1
least = 1
show_original = true
"""
ATTACKS = (  # run name, pp-attack arguments
    ("team-noise", ["noise", "--set", "sigma=0.12", "--seed", "3"]),
    ("team-jpeg", ["jpeg", "--set", "quality=5"]),
    ("team-fgsm", ["fgsm", "--set", "eps=0.05"]),
    ("team-identity", ["identity"]),
)
TIME_KEYS = {"created", "finished"}
VERSION_KEYS = {"versions", "libraries"}


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def write_originals(folder: Path) -> None:
    """Downscaled photos that ship inside the scikit-image wheel (no network, fixed bytes)."""
    import skimage

    folder.mkdir(parents=True)
    data = Path(skimage.__file__).parent / "data"
    for i, name in enumerate(PHOTOS):
        im = Image.open(data / name).convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
        im.save(folder / f"img{i}.png")
    # and one original below the threshold (blurred): reported, and left out of every per-run number
    im = Image.open(data / "chelsea.png").convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
    im = im.resize((16, 12), Image.Resampling.LANCZOS).resize(SIZE, Image.Resampling.BICUBIC)
    im.save(folder / f"img{len(PHOTOS)}.png")


def volatile_json(text: str, tmp: Path | None = None) -> str:
    """The JSON text as written, with the values that change from one run to the next replaced in place (keys,
    their order and the formatting kept): `created`/`finished` time stamps, the `versions`/`libraries` object,
    `mean_seconds`, and the temporary folder's path."""
    keys = "|".join(sorted(TIME_KEYS))
    out = re.sub(rf'"({keys})": "[^"]*"', r'"\1": "<time>"', text)
    out = re.sub(rf'"({"|".join(sorted(VERSION_KEYS))})": \{{[^{{}}]*\}}', r'"\1": "<versions>"', out)
    out = re.sub(r'"mean_seconds": [-+0-9.eE]+', '"mean_seconds": "<seconds>"', out)
    return out.replace(str(tmp), "<tmp>") if tmp is not None else out


def seeded_ids(monkeypatch) -> None:
    """Draw the jury's candidate ids (`secrets.token_urlsafe` in evaluator/outputs/jury_export.py) from a seeded
    generator: same format, same rules, the same ids every time."""
    import base64
    import random
    import types

    from evaluator.outputs import jury_export

    rng = random.Random(0)
    fake = types.SimpleNamespace(token_urlsafe=lambda n: base64.urlsafe_b64encode(rng.randbytes(n)).decode())
    monkeypatch.setattr(jury_export, "secrets", fake)


def csv_without(text: str, column: str) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    out = io.StringIO()
    fields = [f for f in rows[0] if f != column] if rows else []
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def make_runs(tmp: Path, originals: Path, runs: Path) -> dict[str, str]:
    from submission.cli import main as attack_main

    out: dict[str, str] = {}
    for name, args in ATTACKS:
        code = attack_main([*args, "--originals", str(originals), "--out", str(runs / name), "--team", "golden",
                            "--quiet"])
        assert code == 0, name
    # the noise run is also submitted as a zip (a second name), and an invalid run: one image missing, a bad key
    zipped = runs / "team-zipped.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted((runs / "team-noise").iterdir()):
            zf.write(f, f.name)
    bad = runs / "team-invalid"
    shutil.copytree(runs / "team-identity", bad)
    (bad / "img1.png").unlink()
    meta = json.loads((bad / "run.json").read_text(encoding="utf-8"))
    meta["seed"] = "zero"
    (bad / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    for name, _ in ATTACKS:
        folder = runs / name
        out[f"attack/{name}/run.json"] = volatile_json((folder / "run.json").read_text(encoding="utf-8"))
        for f in sorted(folder.iterdir()):
            if f.name != "run.json":
                out[f"attack/{name}/{f.name}"] = sha(f.read_bytes())
        log = (runs / ".pp-attack" / name / "log.csv").read_text(encoding="utf-8")
        out[f"attack/{name}/log.csv"] = csv_without(log, "seconds")
    return out


def jury_labels(jury: Path) -> dict[str, str]:
    key = json.loads((jury / "key.json").read_text(encoding="utf-8"))["candidates"]
    return {cid: f"{v['run']}@{v['image']}" for cid, v in key.items()}


def normalise_jury(jury: Path) -> dict[str, str]:
    """Every file of the jury package, as written (the candidate ids are seeded: `seeded_ids`), and the listing."""
    out: dict[str, str] = {}
    names = []
    for f in sorted(jury.rglob("*")):
        rel = f.relative_to(jury).as_posix()
        names.append(rel)
        if f.is_file():
            out[f"results/jury/{rel}"] = sha(f.read_bytes())
    out["results/jury/<listing>"] = "\n".join(sorted(names))
    return out


def scripted_votes(jury: Path) -> str:
    """Four jurors; for every image juror j picks as most appealing run j % 2 in name order, as least appealing
    run -1 - j % 3 (so the ranking has no full tie)."""
    labels = jury_labels(jury)
    manifest = json.loads((jury / "manifest.json").read_text(encoding="utf-8"))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("juror", "image", "candidate", "choice", "timestamp"))
    for j in range(4):
        for entry in manifest["images"]:
            ids = sorted((c["id"] for c in entry["candidates"]), key=lambda c: labels[c])
            w.writerow((f"juror{j}", entry["image"], ids[j % 2], "most", "2026-01-01T00:00:00Z"))
            w.writerow((f"juror{j}", entry["image"], ids[-1 - j % 3], "least", "2026-01-01T00:00:00Z"))
    return buf.getvalue()


def golden_outputs(tmp: Path) -> dict[str, str]:
    from evaluator.cli import main as evaluate_main
    from evaluator.outputs.codabench import main as codabench_main
    from jury_app.cli import main as jury_main

    originals, runs, results = tmp / "originals", tmp / "runs", tmp / "results"
    write_originals(originals)
    out = {f"originals/{f.name}": sha(f.read_bytes()) for f in sorted(originals.iterdir())}
    runs.mkdir()
    out.update(make_runs(tmp, originals, runs))
    task = tmp / "task.toml"
    task.write_text(TASK_TOML, encoding="utf-8")
    code = evaluate_main(["--originals", str(originals), "--runs", str(runs), "--out", str(results),
                          "--task", str(task), "--no-progress"])
    assert code == 0
    for name in ("runs.csv", "scores.csv", "selection.csv"):
        out[f"results/{name}"] = (results / name).read_text(encoding="utf-8")
    out["results/task.json"] = volatile_json((results / "task.json").read_text(encoding="utf-8"), tmp)
    report = (results / "report.html").read_text(encoding="utf-8")
    report = re.sub(r"versions: .*?<br>created: [^<]*", "versions+created", report).replace(str(tmp), "<tmp>")
    out["results/report.html"] = sha(report)
    out["results/<listing>"] = "\n".join(sorted(p.name for p in results.iterdir()))
    jury = results / "jury"
    out.update(normalise_jury(jury))
    votes = tmp / "votes.csv"
    votes.write_text(scripted_votes(jury), encoding="utf-8")
    assert jury_main(["rank", str(jury), "--votes", str(votes)]) == 0
    out["jury/ranking.csv"] = (jury / "ranking.csv").read_text(encoding="utf-8")
    coda_in, coda_out = tmp / "coda", tmp / "coda-out"
    shutil.copytree(originals, coda_in / "ref")
    shutil.copy(task, coda_in / "ref" / "task.toml")
    shutil.copytree(runs / "team-fgsm", coda_in / "res" / "team-fgsm")
    assert codabench_main([str(coda_in), str(coda_out)]) == 0
    out["codabench/scores.json"] = (coda_out / "scores.json").read_text(encoding="utf-8")
    out["codabench/scores.txt"] = (coda_out / "scores.txt").read_text(encoding="utf-8")
    return {k: sha(v) if len(v) != 64 or not re.fullmatch(r"[0-9a-f]{64}", v) else v for k, v in out.items()}


@pytest.mark.slow
def test_outputs_match_the_golden_fixture(tmp_path, monkeypatch):
    seeded_ids(monkeypatch)
    got = golden_outputs(tmp_path)
    if os.environ.get("PP_GOLDEN_UPDATE") == "1":
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(FIXTURE.read_text(encoding="utf-8"))
    changed = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    assert not changed, f"outputs changed: {changed}"
    assert sorted(got) == sorted(want), (f"missing: {sorted(want.keys() - got.keys())}, "
                                         f"new: {sorted(got.keys() - want.keys())}")


def test_volatile_json_replaces_only_the_volatile_values():
    """Two writes that differ in time stamps, versions and seconds normalise alike; a change of key order,
    indentation or a value does not."""
    def written(meta, **kw):
        return json.dumps(meta, **{"indent": 2, **kw}) + "\n"

    a = {"team": "t", "created": "2026-01-01T00:00:00Z", "summary": {"mean_seconds": 0.25, "psnr": 31.5},
         "versions": {"python": "3.12.1", "numpy": "2.0"}, "finished": "2026-01-01T00:01:00Z"}
    b = {**a, "created": "2027-05-05T10:00:00Z", "summary": {"mean_seconds": 1e-05, "psnr": 31.5},
         "versions": {"python": "3.13.0", "torch": "not installed"}, "finished": "2027-05-05T10:02:00Z"}
    assert volatile_json(written(a)) == volatile_json(written(b))
    reordered = {"created": a["created"], **a}
    for other in (written(reordered), written(a, indent=1), written(a, sort_keys=True),
                  written({**a, "summary": {"mean_seconds": 0.25, "psnr": 31.6}})):
        assert volatile_json(other) != volatile_json(written(a))
