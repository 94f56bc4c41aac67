"""The jury package format: loading, precise errors, blinding checks, metadata-free served images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import (PackageError, PickRule, blinding_problems, check_blinding, check_servable,
                                              juror_facing_values, jpeg_markers, load_key, load_package)
from jury_app.web.served_image import (GRID_MAX_SIDE, Pixels, ServedImageError, blind_screen, candidate_key,
                                  candidate_pixels, png_length, served_bytes, stored_png, strip_jpeg_metadata)
from png_layout import png_parts

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
    """The evaluator's writer (evaluator/outputs/jury_export.py) and this loader agree on the format."""
    import hashlib

    export = pytest.importorskip("evaluator.outputs.jury_export", reason="the evaluator's jury export is not there yet")
    runs = ["TEAMSECRET_r1", "TEAMSECRET_r2", "TEAMSECRET_r3"]
    items, data = [], {}
    for i, image in enumerate(["a", "b"]):
        for j, run in enumerate(runs):
            jpeg = _jpeg((np.random.default_rng(10 * i + j).random((16, 16, 3)) * 255).astype(np.uint8))
            item = export.JuryItem(run, image, hashlib.sha256(jpeg).hexdigest())
            items.append(item)
            data[item] = jpeg
    out = tmp_path / "jury"
    rule = PickRule(3, 2, show_original=True)
    export.write_jury_package(out, ["a", "b"], items, data.__getitem__, rule.for_candidates(3), rule.shrink_note(3),
                              lambda image: np.zeros((8, 8, 3), np.uint8), runs)
    pkg = load_package(out)
    key = load_key(out, pkg)
    check_blinding(pkg, key)
    assert pkg.image_ids == ("a", "b") and key.runs == tuple(runs)
    assert (pkg.task.most, pkg.task.least, pkg.task.show_original) == (2, 1, True) and "shrunk" in pkg.note
    data, mime = served_bytes(pkg.images[0].original)
    assert mime == "image/png"


def _layout(root):
    """The package's file layout with candidate ids replaced by their position: what a second writer could get
    wrong (folder names, suffixes, the original's format, the manifest's keys and version)."""
    manifest = json.loads((root / "manifest.json").read_text())
    ids = {c["id"]: f"c{k}" for k, c in enumerate(c for im in manifest["images"] for c in im["candidates"])}
    files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    for cid, alias in ids.items():
        files = [f.replace(cid, alias) for f in files]
    files.sort()
    text = json.dumps(manifest)
    for cid, alias in ids.items():
        text = text.replace(cid, alias)
    return files, json.loads(text), [Image.open(root / im["original"]).format for im in manifest["images"]]


def test_the_test_fixture_writes_the_layout_the_evaluator_writes(tmp_path, monkeypatch):
    """jury_app/testing/fixtures.py writes through the contract's writer: same folders, names, PNG originals,
    manifest keys and FORMAT_VERSION as evaluator/outputs/jury_export.py (issue 11 review: a second writer)."""
    import hashlib

    from evaluator.contracts import jury_package
    from evaluator.outputs import jury_export

    monkeypatch.setattr(jury_package, "FORMAT_VERSION", 7)  # both writers must take the version from the contract
    runs = ["r1x", "r2x"]
    items, data = [], {}
    for i, image in enumerate(["img00", "img01"]):
        for j, run in enumerate(runs):
            jpeg = _jpeg((np.random.default_rng(10 * i + j).random((16, 16, 3)) * 255).astype(np.uint8))
            item = jury_export.JuryItem(run, image, hashlib.sha256(jpeg).hexdigest())
            items.append(item)
            data[item] = jpeg
    rule = PickRule(1, 1, show_original=True)
    monkeypatch.setattr(jury_package, "check_servable", lambda d: None)  # version 7 is not readable, on purpose
    monkeypatch.setattr(jury_export, "check_servable", lambda d: None)
    jury_export.write_jury_package(tmp_path / "ev", ["img00", "img01"], items, data.__getitem__, rule, None,
                                   lambda image: np.zeros((8, 8, 3), np.uint8), runs)
    make_demo_package(tmp_path / "fx", runs, 2, most=1, least=1, show_original=True, size=8)
    ev, fx = _layout(tmp_path / "ev"), _layout(tmp_path / "fx")
    assert ev[1]["version"] == 7 and ev[2] == ["PNG", "PNG"]
    assert fx == ev


HOSTILE_RUNS = ["images", "flower", "jpg", "candidates", "manifest", "json"]


class Served(Exception):
    """Raised by the stand-in for os.execve: `pp-jury serve` got as far as starting Streamlit."""


def test_run_names_from_the_manifest_text_cannot_block_the_jury(tmp_path, monkeypatch, capsys):
    """Item 1 of issue 10: runs named like pieces of the manifest (and of the image ids) qualify, and
    `pp-jury serve` accepts the package pp-evaluate wrote for them."""
    from evaluator_fixtures import BrightnessBIQA, darken, write_originals, write_run

    from evaluator.config import TaskConfig
    from evaluator.pipeline import evaluate
    from jury_app import cli

    originals = write_originals(tmp_path / "originals", {"flower-01": 0.7, "flower-02": 0.66, "images-03": 0.75})
    for k, run in enumerate(HOSTILE_RUNS):
        write_run(tmp_path / "runs", run, {i: darken(v, 0.4 + 0.04 * k) for i, v in originals.items()})
    result = evaluate(tmp_path / "originals", tmp_path / "runs", tmp_path / "out", TaskConfig(), BrightnessBIQA(),
                      batch_size=4, progress=False)
    assert sorted(r.run for r in result.runs if r.qualified) == sorted(HOSTILE_RUNS)
    jury = tmp_path / "out" / "jury"
    text = (jury / "manifest.json").read_text(encoding="utf-8")
    assert all(run in text for run in ("images", "flower", "jpg", "candidates"))  # the attack is really there
    package, key = check_servable(jury)
    assert sorted(key.runs) == sorted(HOSTILE_RUNS) and len(package.images) == 3
    for image in package.images:  # one codec: every header segment (tables, size, SOF kind) is the same per image
        assert len({tuple(jpeg_markers(c.file.read_bytes())) for c in image.candidates}) == 1
    assert len({c.file.stat().st_mtime_ns for im in package.images for c in im.candidates}) == 1
    started = []

    def fake_execve(path, argv, env):
        started.append(argv)
        raise Served

    monkeypatch.setattr(cli.os, "execve", fake_execve)
    with pytest.raises(Served):
        cli.main(["serve", str(jury), "--port", "8599"])
    assert started and started[0][-1] == str(jury.resolve())
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("where", ["id", "file"])
def test_serve_and_writer_refuse_a_run_name_in_a_candidate_value(pkg_dir, where):
    """The one check both sides run: a run name inside a candidate id or file name is refused, wherever in it."""
    data = json.loads((pkg_dir / "manifest.json").read_text())
    first = data["images"][0]["candidates"][0]
    new_id = f"xx{RUNS[1].upper()}yy"
    if where == "id":
        key = json.loads((pkg_dir / "key.json").read_text())
        key["candidates"][new_id] = key["candidates"].pop(first["id"])
        (pkg_dir / "key.json").write_text(json.dumps(key))
        first["id"] = new_id
    else:
        (pkg_dir / first["file"]).rename(pkg_dir / "images" / f"{new_id}.jpg")
        first["file"] = f"images/{new_id}.jpg"
    (pkg_dir / "manifest.json").write_text(json.dumps(data))
    assert blinding_problems(data, RUNS) == [f"images[0].candidates[0].{where} = {new_id!r} contains the run "
                                             f"name {RUNS[1]!r}"]
    with pytest.raises(PackageError, match=f"candidates\\[0\\].{where} = .*{RUNS[1]}"):
        check_servable(pkg_dir)


def test_juror_facing_values_are_the_candidate_ids_and_file_names_only(pkg_dir):
    data = json.loads((pkg_dir / "manifest.json").read_text())
    values = juror_facing_values(data)
    ids = [c["id"] for im in data["images"] for c in im["candidates"]]
    assert [v for w, v in values if w.endswith(".id")] == ids
    assert [v for w, v in values if w.endswith(".file")] == ids  # the file's stem, without images/ and .jpg
    # a run named like an image id, the folder or the extension is not a problem: these do not tell runs apart
    assert blinding_problems(data, ["img00", "images", "jpg", "candidates", "file"]) == []
    assert blinding_problems(data, [ids[3][2:9]]) == [f"images[1].candidates[0].id = {ids[3]!r} contains the "
                                                      f"run name {ids[3][2:9]!r}",
                                                      f"images[1].candidates[0].file = {ids[3]!r} contains the "
                                                      f"run name {ids[3][2:9]!r}"]
    assert blinding_problems(data, [ids[0][:2]]) == []  # names under 3 characters are not searched for


def _decoded(path) -> bytes:
    """The organizer's file as Pillow decodes it (RGB)."""
    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


def test_served_png_length_is_a_function_of_the_dimensions_only():
    """Review of issue 10, item 2: equal-size JPEG padding could be read back (the end marker) and the JPEG bytes
    matched. A served PNG's length is png_length(w, h) = 8 + 25 + 12 + 32 + 12 + 2 + 5 ceil(raw / 65535) + raw
    + 4 + 12 with raw = h (1 + 3 w), whatever the content, and every byte but the pixels and the key is equal."""
    rng = np.random.default_rng(0)
    for width, height in [(1, 1), (16, 16), (300, 219), (512, 384)]:  # 1 .. 10 stored blocks
        raw = height * (1 + 3 * width)
        expected = 8 + 25 + 12 + 32 + 12 + 2 + 5 * -(-raw // 65535) + raw + 4 + 12
        assert png_length(width, height) == expected
        contents = [np.zeros((height, width, 3), np.uint8), np.full((height, width, 3), 255, np.uint8),
                    rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                    np.broadcast_to(np.arange(width, dtype=np.uint8)[None, :, None], (height, width, 3))]
        skeletons = set()
        for k, rgb in enumerate(contents):
            key = bytes([k]) * 32
            data = stored_png(Pixels(width, height, rgb.tobytes()), key)
            assert len(data) == expected
            parts = png_parts(data)
            assert (parts.width, parts.height, parts.rgb, parts.key) == (width, height, rgb.tobytes(), key)
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), rgb)  # a standard decoder agrees
            skeletons.add(parts.skeleton)
        assert len(skeletons) == 1
    with pytest.raises(ValueError, match="32 bytes"):
        stored_png(Pixels(1, 1, b"abc"), b"short")
    with pytest.raises(ValueError, match="bytes of pixels"):
        stored_png(Pixels(2, 1, b"abc"), bytes(32))


def test_candidate_pixels_grey_colour_large_and_broken(tmp_path):
    """Candidates are decoded to RGB, so a greyscale JPEG is served at the same length as a colour one; a
    candidate larger than the grid is shrunk; an undecodable one names the file."""
    grey, colour = tmp_path / "grey.jpg", tmp_path / "colour.jpg"
    Image.fromarray(np.full((20, 30), 90, np.uint8)).save(grey, quality=90)
    colour.write_bytes(_jpeg(np.full((20, 30, 3), 90, np.uint8)))
    g, c = candidate_pixels(grey), candidate_pixels(colour)
    assert (g.width, g.height, len(g.rgb)) == (c.width, c.height, len(c.rgb)) == (30, 20, 1800)
    assert len(stored_png(g, bytes(32))) == len(stored_png(c, bytes(32))) == png_length(30, 20)
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg(np.full((GRID_MAX_SIDE * 2, 300, 3), 120, np.uint8)))
    assert max(candidate_pixels(big).width, candidate_pixels(big).height) == GRID_MAX_SIDE
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ServedImageError, match="bad.jpg: cannot decode"):
        candidate_pixels(bad)


def _media_id(data: bytes, mime: str = "image/png") -> str:
    """The file id Streamlit's media endpoint gives these bytes (`/media/<id>.png`): a hash of the content."""
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    return _calculate_file_id(data, mime)


def test_blind_screen_sizes_equal_pixels_exact_urls_keyed_per_juror(tmp_path):
    """Item 3 of issue 10 at the serving level: one length per image and no byte but the pixels that differs by
    run; the pixels are exactly the organizer's decoded JPEG; the key chunk (hence the media URL) differs per
    juror and candidate and is not computable without the store's secret."""
    import hashlib
    import hmac

    runs = [f"TEAMSECRET_run{i}" for i in range(5)]
    root = make_demo_package(tmp_path / "jury", runs, 2, size=64, leak_run_in_metadata=True)
    secret = bytes(range(32))
    for image in load_package(root).images:
        assert len({c.file.stat().st_size for c in image.candidates}) > 1  # the channel: JPEG sizes differ by run
        pixels = {c.id: candidate_pixels(c.file) for c in image.candidates}
        a = blind_screen(pixels, secret, "juror001")
        b = blind_screen(pixels, secret, "juror002")
        assert set(a) == set(pixels) and {len(x) for x in a.values()} == {png_length(64, 64)}
        parts = {cid: png_parts(data) for cid, data in a.items()}
        assert len({p.skeleton for p in parts.values()}) == 1  # nothing but pixels and key differs
        for c in image.candidates:
            assert parts[c.id].rgb == _decoded(c.file)  # exactly what the organizer's decoder reads
            assert parts[c.id].key == hmac.new(secret, f"juror001|{c.id}".encode(), hashlib.sha256).digest()
            assert parts[c.id].key == candidate_key(secret, "juror001", c.id) != png_parts(b[c.id]).key
            assert b"TEAMSECRET" not in a[c.id]
        assert len({p.key for p in parts.values()}) == 5
        computable = {_media_id(stored_png(p, bytes(32))) for p in pixels.values()}
        computable |= {_media_id(c.file.read_bytes(), "image/jpeg") for c in image.candidates}
        urls_a, urls_b = {_media_id(x) for x in a.values()}, {_media_id(x) for x in b.values()}
        assert len(urls_a) == len(urls_b) == 5 and not urls_a & computable and not urls_a & urls_b
        assert blind_screen(pixels, secret, "juror001") == a  # same store secret (a restart): same bytes
        assert blind_screen(pixels, bytes(32), "juror001") != a
    assert blind_screen({}, bytes(32), "juror001") == {}
