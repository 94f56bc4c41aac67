"""Attention checks ([jury] attention_every): validated like every task key, planted by the package writer so that
they look like any candidate (same id and file rules, JPEG without metadata, served PNG of the same length and
skeleton), reported per juror by `pp-jury rank` and never counted in the ranking; `rank --exclude-failed`."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from evaluator.config import TaskConfigError, task_from_dict
from evaluator.contracts.jury_package import (CANDIDATE_ID_RE, PackageError, PickRule, check_jpeg_metadata_free,
                                              check_servable, load_key, load_package)
from evaluator.outputs.jury_export import JuryItem, write_jury_package
from jury_app.cli import main
from jury_app.ranking.attention import check_results, without_checks
from jury_app.ranking.summary import rank_jury
from jury_app.testing.fixtures import make_demo_package
from jury_app.votes.backends import open_store
from jury_app.web.served_image import blind_screen, candidate_pixels
from png_layout import png_parts

RUNS = ["TEAMSECRET_a", "TEAMSECRET_b", "TEAMSECRET_c", "TEAMSECRET_d", "TEAMSECRET_e"]


def test_attention_every_is_validated_and_off_by_default():
    assert task_from_dict({}).jury.attention_every == 0
    assert "attention_every" not in task_from_dict({}).to_dict()["jury"]  # task.json as before checks existed
    assert task_from_dict({"jury": {"attention_every": 4}}).to_dict()["jury"]["attention_every"] == 4
    for bad, message in ((-1, "an integer >= 0"), ("4", "must be int"), (True, "must be int"), (2.5, "must be int")):
        with pytest.raises(TaskConfigError, match=f"jury.attention_every.*{message}|{message}.*") as err:
            task_from_dict({"jury": {"attention_every": bad}}, "task.toml")
        assert "attention_every" in str(err.value) and "task.toml" in str(err.value)


def _write(tmp_path, every: int):
    """The real writer on 4 images x 3 runs of 40x32 photos-like noise."""
    rng = np.random.default_rng(0)
    originals = {f"im{k}": rng.integers(0, 255, (32, 40, 3), dtype=np.uint8) for k in range(4)}
    jpegs = {}
    for image, rgb in originals.items():
        for run in RUNS[:3]:
            buf = io.BytesIO()
            Image.fromarray(np.clip(rgb.astype(int) + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)
                            ).save(buf, "JPEG", quality=90)
            jpegs[(run, image)] = buf.getvalue()
    items = [JuryItem(run, image, hashlib.sha256(data).hexdigest()) for (run, image), data in jpegs.items()]
    root = tmp_path / f"jury{every}"
    key = write_jury_package(root, list(originals), items, lambda it: jpegs[(it.run, it.image)],
                             PickRule(most=1, least=1, attention_every=every), None, originals.__getitem__, RUNS[:3])
    return root, key


def test_the_writer_plants_checks_that_look_like_any_candidate(tmp_path):
    root, returned = _write(tmp_path, 2)
    package, key = check_servable(root)  # everything pp-jury serve checks
    assert package.task.attention_every == 2 and key.runs == tuple(RUNS[:3])
    assert set(returned) == set(key.candidates)  # the returned key: runs' candidates only
    assert sorted(key.checks.values()) == ["im1", "im3"]  # every 2nd image
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["task"]["attention_every"] == 2
    for im in package.images:
        has_check = im.image in key.checks.values()
        assert len(im.candidates) == 3 + has_check
        entries = next(e for e in manifest["images"] if e["image"] == im.image)["candidates"]
        assert all(set(e) == {"id", "file"} and e["file"] == f"images/{e['id']}.jpg" for e in entries)
        served = blind_screen({c.id: candidate_pixels(c.file) for c in im.candidates}, bytes(32), "juror001")
        parts = {cid: png_parts(data) for cid, data in served.items()}
        assert len({len(d) for d in served.values()}) == 1  # one length per image, the check's too
        assert len({p.skeleton for p in parts.values()}) == 1  # and the same bytes besides pixels and key
        for c in im.candidates:
            data = c.file.read_bytes()
            assert CANDIDATE_ID_RE.match(c.id) and c.file.name == f"{c.id}.jpg"
            check_jpeg_metadata_free(data, c.id)  # JFIF only, like the scored JPEGs
            with Image.open(c.file) as decoded:
                assert decoded.format == "JPEG" and decoded.size == (40, 32)
    # the check is heavily degraded: far from its original, unlike the candidates
    (check_id, image), = [(c, i) for c, i in key.checks.items() if i == "im1"]
    rgb = np.asarray(Image.open(root / "images" / f"{check_id}.jpg").convert("RGB"), dtype=float)
    assert rgb.std(axis=(0, 1)).mean() < 60  # 8x shrunk noise: nearly flat blocks


def test_no_checks_leave_manifest_and_key_as_before(tmp_path):
    root, _ = _write(tmp_path, 0)
    assert "attention_every" not in json.loads((root / "manifest.json").read_text())["task"]
    assert "checks" not in json.loads((root / "key.json").read_text())
    assert load_key(root).checks == {} and all(len(im.candidates) == 3 for im in load_package(root).images)


@pytest.mark.parametrize("edit, message", [
    (lambda k, c: k["checks"][c].update(kind="repeat"), "must be"),
    (lambda k, c: k["checks"][c].update(image="im0"), "the image it is listed under"),
    (lambda k, c: k["candidates"].update({c: {"run": "x", "image": "im1"}}), "not in 'candidates'"),
    (lambda k, c: k.update(checks=[c]), "must be an object"),
    (lambda k, c: k["checks"].pop(c), "missing ids"),
])
def test_a_wrong_checks_entry_is_refused(tmp_path, edit, message):
    root, _ = _write(tmp_path, 2)
    data = json.loads((root / "key.json").read_text())
    edit(data, sorted(data["checks"])[0])
    (root / "key.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match=message):
        load_key(root)


def test_a_bad_attention_every_in_the_manifest_is_refused(tmp_path):
    root, _ = _write(tmp_path, 2)
    data = json.loads((root / "manifest.json").read_text())
    data["task"]["attention_every"] = -2
    (root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="task.attention_every = -2"):
        load_package(root)


@pytest.fixture()
def voted(tmp_path):
    """4 images, a check in images 2 and 4; juror001 picks the check as most appealing twice, juror002 once,
    juror003 never (it puts it among the least appealing)."""
    root = make_demo_package(tmp_path / "jury", RUNS, 4, most=2, least=1, size=16, attention_every=2)
    package, key = load_package(root), load_key(root)
    store = open_store(package)
    jurors = [l.juror for l in store.add_jurors(3)]
    for im in package.images:
        check = next((c for c, i in key.checks.items() if i == im.image), None)
        real = sorted(c.id for c in im.candidates if c.id != check)
        for k, juror in enumerate(jurors):
            fails = check is not None and (k == 0 or (k == 1 and im.image == "img01"))
            most = [check, real[k]] if fails else [real[k], real[k + 1]]
            least = [check] if (check is not None and not fails) else [real[4]]
            store.save_ballot(juror, im.image, most, least)
    return root, store, key


def test_results_per_juror_and_checks_never_ranked(voted):
    root, store, key = voted
    results = {r.juror: (r.checks, r.failed) for r in check_results(store.ballots(), key)}
    assert results == {"juror001": (2, 2), "juror002": (2, 1), "juror003": (2, 0)}
    ranking = rank_jury(store.ballots(), key)
    assert {s.run for s in ranking.scores} == set(RUNS)  # no check among the runs
    stripped = list(without_checks(store.ballots(), key))
    assert not {c for b in stripped for c in b.most + b.least} & set(key.checks)
    assert sum(len(b.most) for b in stripped) == 3 * 4 * 2 - 3  # the three failed checks' picks counted for no run


def _rank(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_rank_reports_checks_and_excludes_failed_jurors(voted, capsys):
    root, store, key = voted
    code, everyone, err = _rank(capsys, "rank", root)
    assert code == 0 and "'juror001' 2/2 failed, 'juror002' 1/2 failed, 'juror003' 0/2 failed" in err
    assert "12 ballots from 3 jurors" in err
    code, strict, err = _rank(capsys, "rank", root, "--exclude-failed")
    assert code == 0 and "left out 8 ballot(s) of 2 juror(s) who failed more than 0%" in err
    assert "'juror001', 'juror002'" in err and "4 ballots from 1 jurors" in err
    expected = rank_jury([b for b in store.ballots() if b.juror == "juror003"], key)
    table = list(csv.DictReader(io.StringIO(strict)))
    assert [(r["run"], int(r["most"])) for r in table] == [(s.run, s.most) for s in expected.scores]
    code, lenient, err = _rank(capsys, "rank", root, "--exclude-failed", "--max-fail-share", "0.5")
    assert code == 0 and "left out 4 ballot(s) of 1 juror(s) who failed more than 50%" in err
    assert "8 ballots from 2 jurors" in err and len({everyone, strict, lenient}) == 3
    for bad in ("1", "-0.1", "half"):
        with pytest.raises(SystemExit) as ex:
            main(["rank", str(root), "--exclude-failed", "--max-fail-share", bad])
        assert ex.value.code == 2
    capsys.readouterr()


def test_exclude_failed_without_checks_is_an_error(tmp_path, capsys):
    root = make_demo_package(tmp_path / "plain", RUNS, 2, size=16)
    code, _, err = _rank(capsys, "rank", root, "--exclude-failed")
    assert code == 2 and "no attention checks" in err and not (root / "ranking.csv").exists()


def test_simulated_attentive_jurors_pass_every_check(tmp_path):
    """The scripted jurors prefer versions close to the original (SSIM): they never pick the degraded check."""
    from jury_app.testing.simulate import simulate

    root = make_demo_package(tmp_path / "jury", RUNS, 4, size=48, show_original=True, attention_every=2)
    store = open_store(load_package(root))
    simulate(root, root / "originals", jurors=4, sigma=0.02, seed=1, store=store)
    results = check_results(store.ballots(), load_key(root))
    assert [(r.checks, r.failed) for r in results] == [(2, 0)] * 4


def test_organizer_page_shows_each_jurors_check_results(voted, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from jury_app.web.context import ENV_DIR

    root, store, key = voted
    monkeypatch.setenv(ENV_DIR, str(root))
    at = AppTest.from_string("from jury_app.web import organizer_page\norganizer_page.render()", default_timeout=60)
    at.query_params["admin"] = store.new_admin_token()
    at.run()
    assert not at.exception
    assert any(s.value.startswith("Attention checks") for s in at.subheader)
    table = next(d.value for d in at.dataframe if "fail share" in d.value.columns)
    assert [tuple(r) for r in table[["juror", "checks", "failed"]].itertuples(index=False)] == [
        ("juror001", 2, 2), ("juror002", 2, 1), ("juror003", 2, 0)]


def test_the_page_sends_a_check_like_any_candidate(tmp_path, monkeypatch):
    """On the juror page, an image with a planted check shows one more letter, and the check's bytes are
    `blind_screen`'s like every other candidate's: one length for the whole grid, per-juror URLs."""
    from pathlib import Path

    from streamlit.runtime.memory_media_file_storage import _calculate_file_id
    from streamlit.testing.v1 import AppTest

    from jury_app.web.context import ENV_DIR

    root = make_demo_package(tmp_path / "jury", RUNS, 2, size=16, attention_every=1)
    monkeypatch.setenv(ENV_DIR, str(root))
    package, key = load_package(root), load_key(root)
    store = open_store(package)
    link = store.add_jurors(1)[0]
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "jury_app" / "app.py"), default_timeout=60)
    at.query_params["token"] = link.token
    at.run()
    urls = [u for im in at.image for u in im.value]
    image = package.images[0]
    assert len(urls) == len(image.candidates) == 6 and len(at.pills[0].options) == 6
    sent = blind_screen({c.id: candidate_pixels(c.file) for c in image.candidates}, store.image_secret(), link.juror)
    assert [c for c, i in key.checks.items() if i == image.image][0] in sent
    assert len({len(b) for b in sent.values()}) == 1
    assert {u.rsplit("/", 1)[-1].split(".")[0] for u in urls} == {_calculate_file_id(b, "image/png")
                                                                   for b in sent.values()}
