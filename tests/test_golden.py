"""Golden outputs: the whole flow on a tiny fixed case, compared with `tests/golden/pipeline.json` byte for byte.

originals (5 real photos at 128x96, and one blurred below the threshold) -> pp-attack (noise, jpeg, fgsm,
identity; one run shipped as a zip again) plus a hand-made invalid run -> pp-evaluate (default BRISQUE, task
rules in TASK_TOML) -> the Codabench scoring program on one run -> pp-jury rank on scripted votes. Every deterministic output is normalised (time stamps, library versions,
temporary paths and the jury's random candidate ids taken out) and hashed; the test fails naming each output whose
hash changed. A refactoring must leave every hash as it is.

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


def drop_keys(value, keys: set[str]):
    if isinstance(value, dict):
        return {k: drop_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [drop_keys(v, keys) for v in value]
    return value


def canonical_json(value) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)


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
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        meta = drop_keys(meta, TIME_KEYS | VERSION_KEYS)
        meta.get("summary", {}).pop("mean_seconds", None)
        out[f"attack/{name}/run.json"] = canonical_json(meta)
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
    labels = jury_labels(jury)
    out: dict[str, str] = {}
    manifest = json.loads((jury / "manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["images"]:
        entry["candidates"] = sorted(({"id": labels[c["id"]], "file": c["file"].replace(c["id"], labels[c["id"]])}
                                      for c in entry["candidates"]), key=lambda c: c["id"])
    out["results/jury/manifest.json"] = canonical_json(manifest)
    key = json.loads((jury / "key.json").read_text(encoding="utf-8"))
    out["results/jury/key.json"] = canonical_json({labels[c]: v for c, v in key["candidates"].items()})
    names = []
    for f in sorted(jury.rglob("*")):
        rel = f.relative_to(jury).as_posix()
        for cid, label in labels.items():
            rel = rel.replace(cid, label)
        names.append(rel)
        if f.is_file() and f.name not in ("manifest.json", "key.json"):
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
    meta = json.loads((results / "task.json").read_text(encoding="utf-8"))
    out["results/task.json"] = canonical_json(drop_keys(meta, TIME_KEYS | VERSION_KEYS)).replace(str(tmp), "<tmp>")
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
def test_outputs_match_the_golden_fixture(tmp_path):
    got = golden_outputs(tmp_path)
    if os.environ.get("PP_GOLDEN_UPDATE") == "1":
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(FIXTURE.read_text(encoding="utf-8"))
    changed = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    assert not changed, f"outputs changed: {changed}"
    assert sorted(got) == sorted(want), (f"missing: {sorted(want.keys() - got.keys())}, "
                                         f"new: {sorted(got.keys() - want.keys())}")
