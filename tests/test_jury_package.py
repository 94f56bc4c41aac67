"""The jury package format: loading, precise errors, blinding checks, metadata-free served images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from jury_app.fixtures import make_demo_package
from jury_app.package import PackageError, check_blinding, load_key, load_package
from jury_app.served_image import GRID_MAX_SIDE, ServedImageError, served_bytes, strip_jpeg_metadata

RUNS = ["TEAMSECRET_run1", "TEAMSECRET_run2", "TEAMSECRET_run3"]


@pytest.fixture()
def pkg_dir(tmp_path):
    return make_demo_package(tmp_path / "jury", RUNS, 2, size=16)


def edit_manifest(pkg_dir, change):
    path = pkg_dir / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_demo_package_loads(pkg_dir):
    pkg = load_package(pkg_dir)
    assert pkg.image_ids == ("img00", "img01") and pkg.task.most == 3 and pkg.task.least == 2
    assert all(len(im.candidates) == 3 and all(c.file.is_file() for c in im.candidates) for im in pkg.images)
    key = load_key(pkg_dir, pkg)
    assert key.runs == tuple(RUNS)
    check_blinding(pkg, key)
    assert b"TEAMSECRET" not in (pkg_dir / "manifest.json").read_bytes()


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d["task"].update(most=0), "task.most"),
    (lambda d: d["task"].update(show_original=True), "show_original is true"),
    (lambda d: d["task"].update(extra=1), "unknown keys"),
    (lambda d: d.update(images=[]), "non-empty list"),
    (lambda d: d["images"][1].update(image="img00"), "listed twice"),
    (lambda d: d["images"][0].update(image="../x"), "image id"),
    (lambda d: d["images"][0]["candidates"][0].update(file="../../etc/passwd"), "leaves the package"),
    (lambda d: d["images"][0]["candidates"][0].update(file="/etc/passwd"), "not a relative path"),
    (lambda d: d["images"][0]["candidates"][0].update(file="images/missing.jpg"), "does not exist"),
    (lambda d: d["images"][0]["candidates"][0].update(id="short"), "candidate id"),
    (lambda d: d["images"][0]["candidates"][0].update(run="TEAMSECRET_run1"), "exactly the keys"),
    (lambda d: d["images"][1]["candidates"][0].update(id=d["images"][0]["candidates"][0]["id"]), "used twice"),
])
def test_bad_manifest_named_precisely(pkg_dir, change, message):
    edit_manifest(pkg_dir, change)
    with pytest.raises(PackageError, match=message) as err:
        load_package(pkg_dir)
    assert "manifest.json" in str(err.value)


def test_missing_and_broken_files(tmp_path, pkg_dir):
    with pytest.raises(PackageError, match="not a folder"):
        load_package(tmp_path / "nope")
    (pkg_dir / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid UTF-8 JSON"):
        load_package(pkg_dir)
    (pkg_dir / "manifest.json").unlink()
    with pytest.raises(PackageError, match="missing"):
        load_package(pkg_dir)


def test_symlink_escape_refused(tmp_path, pkg_dir):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    (pkg_dir / "images" / "link.jpg").symlink_to(outside)
    edit_manifest(pkg_dir, lambda d: d["images"][0]["candidates"][0].update(file="images/link.jpg"))
    with pytest.raises(PackageError, match="outside the package"):
        load_package(pkg_dir)


def test_key_must_match_manifest(pkg_dir):
    path = pkg_dir / "key.json"
    key = json.loads(path.read_text())
    cid = sorted(key["candidates"])[0]
    broken = dict(key["candidates"])
    broken.pop(cid)
    path.write_text(json.dumps({"candidates": broken}))
    with pytest.raises(PackageError, match="missing ids"):
        load_key(pkg_dir)
    wrong_image = {**key["candidates"], cid: {"run": "r", "image": "elsewhere"}}
    path.write_text(json.dumps({"candidates": wrong_image}))
    with pytest.raises(PackageError, match="in the key but"):
        load_key(pkg_dir)
    image = key["candidates"][cid]["image"]
    twin = next(c for c in key["candidates"] if c != cid and key["candidates"][c]["image"] == image)
    dup = {**key["candidates"], twin: dict(key["candidates"][cid])}
    path.write_text(json.dumps({"candidates": dup}))
    with pytest.raises(PackageError, match="two candidates"):
        load_key(pkg_dir)


def test_check_blinding_catches_run_name_in_manifest_and_file_names(pkg_dir):
    pkg = load_package(pkg_dir)
    key = load_key(pkg_dir, pkg)
    first = pkg.images[0].candidates[0]
    leaky = pkg_dir / "images" / f"TEAMSECRET_run1_{first.id}.jpg"
    first.file.rename(leaky)
    edit_manifest(pkg_dir, lambda d: d["images"][0]["candidates"][0].update(file=f"images/{leaky.name}"))
    with pytest.raises(PackageError, match="TEAMSECRET_run1"):
        check_blinding(load_package(pkg_dir), key)


def _jpeg(rgb, **kw):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
def test_strip_jpeg_metadata_is_lossless_and_clean(progressive):
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010E] = "TEAMSECRET_run1 description"  # ImageDescription
    data = _jpeg(rgb, comment=b"TEAMSECRET_run1", exif=exif.tobytes(), progressive=progressive)
    data += b"TEAMSECRET_run1 trailer"
    assert data.count(b"TEAMSECRET") == 3
    clean = strip_jpeg_metadata(data)
    assert b"TEAMSECRET" not in clean
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(clean))), np.asarray(Image.open(io.BytesIO(data))))
    assert clean.endswith(b"\xff\xd9")
    with pytest.raises(ServedImageError, match="not a JPEG"):
        strip_jpeg_metadata(b"\x89PNG....")
    with pytest.raises(ServedImageError):
        strip_jpeg_metadata(data[: len(data) // 3])


def test_served_bytes_presizes_large_and_strips_png_text(tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg(np.full((GRID_MAX_SIDE * 2, 300, 3), 120, np.uint8), comment=b"TEAMSECRET"))
    data, mime = served_bytes(big)
    assert mime == "image/jpeg" and b"TEAMSECRET" not in data
    assert max(Image.open(io.BytesIO(data)).size) == GRID_MAX_SIDE
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "TEAMSECRET_run2")
    png = tmp_path / "o.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(png, pnginfo=info)
    data, mime = served_bytes(png)
    assert mime == "image/png" and b"TEAMSECRET" not in data
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ServedImageError, match="cannot decode"):
        served_bytes(bad)


def test_package_written_by_the_evaluator_loads(tmp_path):
    """The evaluator's writer (evaluator/jury_export.py) and this loader agree on the format."""
    import hashlib

    export = pytest.importorskip("evaluator.jury_export", reason="the evaluator's jury export is not there yet")
    runs = ["TEAMSECRET_r1", "TEAMSECRET_r2", "TEAMSECRET_r3"]
    items, data = [], {}
    for i, image in enumerate(["a", "b"]):
        for j, run in enumerate(runs):
            jpeg = _jpeg((np.random.default_rng(10 * i + j).random((16, 16, 3)) * 255).astype(np.uint8))
            item = export.JuryItem(run, image, hashlib.sha256(jpeg).hexdigest())
            items.append(item)
            data[item] = jpeg
    out = tmp_path / "jury"
    export.write_jury_package(out, ["a", "b"], items, data.__getitem__, export.shrink_picks(3, 2, 3), True,
                              lambda image: np.zeros((8, 8, 3), np.uint8), runs)
    pkg = load_package(out)
    key = load_key(out, pkg)
    check_blinding(pkg, key)
    assert pkg.image_ids == ("a", "b") and key.runs == tuple(runs)
    assert (pkg.task.most, pkg.task.least, pkg.task.show_original) == (2, 1, True) and "shrunk" in pkg.note
    data, mime = served_bytes(pkg.images[0].original)
    assert mime == "image/png"
