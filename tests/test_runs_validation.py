"""Run validation (`evaluator.intake.runs`): valid runs as folders and zips, and many broken submissions, each with
its own specific message. Everything is made for real in tmp_path: PNG/JPEG files, zips, symlinks, odd names."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from evaluator_fixtures import INVISIBLE_CHARS

from evaluator.common.imageio import load_rgb
from evaluator.intake.runs import (
    ImageRef, Limits, OriginalsError, RunReadError, RunsDirError, ValidatedRun, find_runs, index_originals,
    validate_run,
)

W, H = 32, 24
IDS = ("a", "b", "c")
META = {"team": "t", "run": "r1", "method": "ifgsm", "params": {"eps": 4}, "biqa": "brisque",
        "created": "2026-01-31T12:00:00Z", "kit_version": "0.1.0", "seed": 0}


def png_bytes(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written by hand (so headers can say anything): signature, IHDR, IDAT, IEND with correct CRCs."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if rows is None:
        rows = b"\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@dataclass
class Kit:
    root: Path
    originals_dir: Path
    runs_dir: Path
    pixels: dict[str, np.ndarray]

    @property
    def originals(self):
        return index_originals(self.originals_dir)

    def folder(self, name: str = "team-r1") -> Path:
        """A valid run folder: a.png, b.png, c.jpg (JPEG), run.json."""
        run = self.runs_dir / name
        run.mkdir()
        for i in IDS:
            img = Image.fromarray(self.pixels[i] // 2 + 10)
            if i == "c":
                img.save(run / "c.jpg", quality=95)
            else:
                img.save(run / f"{i}.png")
        (run / "run.json").write_text(json.dumps(META))
        return run

    def zipped(self, name: str = "team-z1", *, top: str | None = "", extra: Callable[[zipfile.ZipFile], None] | None = None,
               skip: tuple[str, ...] = ()) -> Path:
        """A zip of a valid run; top '' = folder named like the zip, None = files at the root, else that folder."""
        src = self.root / f"src-{name}"
        src.mkdir()
        folder = self.folder_at(src)
        prefix = {"": f"{name}/", None: ""}.get(top, f"{top}/")
        path = self.runs_dir / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.iterdir()):
                if f.name not in skip:
                    zf.write(f, prefix + f.name)
            if extra is not None:
                extra(zf)
        return path

    def folder_at(self, parent: Path) -> Path:
        saved, self.runs_dir = self.runs_dir, parent
        try:
            return self.folder("content")
        finally:
            self.runs_dir = saved


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    originals = tmp_path / "originals"
    runs = tmp_path / "runs"
    originals.mkdir()
    runs.mkdir()
    rng = np.random.default_rng(7)
    pixels = {}
    for i in IDS:
        pixels[i] = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels[i]).save(originals / f"{i}.png")
    return Kit(tmp_path, originals, runs, pixels)


def messages(run: ValidatedRun) -> list[str]:
    return [str(i) for i in run.issues]


def assert_issue(run: ValidatedRun, file: str, fragment: str, count: int = 1) -> None:
    assert not run.valid
    hits = [i for i in run.issues if i.file == file and fragment in str(i)]
    assert hits, f"no issue for {file!r} containing {fragment!r}; got {messages(run)}"
    assert len(run.issues) == count, messages(run)
    for i in run.issues:
        assert i.problem and i.fix, i  # every issue says what is wrong and what to do
    assert set(run.images) <= set(IDS)


# --- valid runs ---------------------------------------------------------------------------------------------

def test_valid_folder_run_loads_every_image(kit: Kit) -> None:
    path = kit.folder()
    (path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # OS clutter is ignored, never read
    (path / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    run = validate_run(path, kit.originals)
    assert run.valid, messages(run)
    assert run.name == "team-r1" and run.meta == META
    assert sorted(run.images) == list(IDS)
    for i, ref in run.images.items():
        assert isinstance(ref, ImageRef)
        file = path / ref.name
        assert ref.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
        np.testing.assert_array_equal(ref.load(), load_rgb(file))
    np.testing.assert_array_equal(run.images["a"].load(), kit.pixels["a"] // 2 + 10)  # PNG is lossless
    assert run.images["c"].name == "c.jpg" and run.images["c"].header.format == "JPEG"


@pytest.mark.parametrize("top", ["", None], ids=["folder-named-like-zip", "files-at-root"])
def test_valid_zip_run_matches_the_folder(kit: Kit, top: str | None) -> None:
    def clutter(zf: zipfile.ZipFile) -> None:
        zf.writestr("__MACOSX/team-z1/._a.png", b"\x00\x05\x16\x07")
    zpath = kit.zipped(top=top, extra=clutter)
    folder = kit.folder("team-r1")
    zrun, frun = validate_run(zpath, kit.originals), validate_run(folder, kit.originals)
    assert zrun.valid, messages(zrun)
    assert zrun.name == "team-z1" and zrun.meta == META
    assert {i: r.sha256 for i, r in zrun.images.items()} == {i: r.sha256 for i, r in frun.images.items()}
    for i in IDS:
        np.testing.assert_array_equal(zrun.images[i].load(), frun.images[i].load())
    copy = pickle.loads(pickle.dumps(zrun.images["c"]))  # refs travel to worker processes
    np.testing.assert_array_equal(copy.load(), frun.images["c"].load())


# --- broken folder runs: one test case each, with its own message ---------------------------------------------

def _rm(name: str) -> Callable[[Path, Kit], None]:
    return lambda run, kit: (run / name).unlink()


def _write(name: str | bytes, data: bytes) -> Callable[[Path, Kit], None]:
    def build(run: Path, kit: Kit) -> None:
        target = os.path.join(os.fsencode(run), name) if isinstance(name, bytes) else run / name
        with open(target, "wb") as f:
            f.write(data)
    return build


def _save(name: str, arr: np.ndarray | None = None, *, mode: str | None = None, remove: str | None = None,
          **kw) -> Callable[[Path, Kit], None]:
    def build(run: Path, kit: Kit) -> None:
        if remove:
            (run / remove).unlink()
        img = Image.fromarray(arr) if arr is not None else Image.new(mode or "RGB", (W, H), "red")
        img.save(run / name, **kw)
    return build


def _meta(text: str) -> Callable[[Path, Kit], None]:
    return lambda run, kit: (run / "run.json").write_text(text)


def _meta_edit(**changes) -> Callable[[Path, Kit], None]:
    def build(run: Path, kit: Kit) -> None:
        meta = {k: v for k, v in {**META, **changes}.items() if v is not ...}
        (run / "run.json").write_text(json.dumps(meta))
    return build


def _link_outside(run: Path, kit: Kit) -> None:
    secret = kit.root / "secret.png"
    Image.fromarray(kit.pixels["a"]).save(secret)
    (run / "a.png").unlink()
    os.symlink(secret, run / "a.png")


def _subfolder(run: Path, kit: Kit) -> None:
    (run / "extra").mkdir()
    (run / "b.png").rename(run / "extra" / "b.png")


def _png_as_jpg(run: Path, kit: Kit) -> None:
    (run / "c.jpg").unlink()
    Image.fromarray(kit.pixels["c"]).save(run / "c.jpg", format="PNG")


def _truncated(run: Path, kit: Kit) -> None:
    data = (run / "a.png").read_bytes()
    (run / "a.png").write_bytes(data[: len(data) // 2])


def _empty(run: Path, kit: Kit) -> None:
    for f in run.iterdir():
        f.unlink()


def _only_meta(run: Path, kit: Kit) -> None:
    for f in run.iterdir():
        if f.name != "run.json":
            f.unlink()


def _non_utf8_name(run: Path, kit: Kit) -> None:
    with open(os.path.join(os.fsencode(run), b"b\xff.png"), "wb") as f:
        f.write((run / "b.png").read_bytes())


def _fifo(run: Path, kit: Kit) -> None:
    os.mkfifo(run / "notes")


_RGB16 = png_bytes(W, H, bit_depth=16, rows=b"".join(b"\x00" + bytes(W * 6) for _ in range(H)))

FOLDER_CASES = {
    # id: (build, file in the issue, message fragment, number of issues)
    "missing-image": (_rm("b.png"), "b.png", "is missing (no b.png or b.jpg)", 1),
    "extra-image": (_save("zzz.png", np.zeros((H, W, 3), np.uint8)), "zzz.png", "has no original", 1),
    "extra-text-file": (_write("notes.txt", b"hello"), "notes.txt", "unsupported type '.txt'", 1),
    "no-extension": (_write("README", b"hello"), "README", "is not an image or run.json", 1),
    "wrong-size": (_save("a.png", np.zeros((H, W + 1, 3), np.uint8)), "a.png", "is 33x24 pixels but its original is 32x24", 1),
    "one-pixel": (_save("a.png", np.zeros((1, 1, 3), np.uint8)), "a.png", "is 1x1 pixels", 1),
    "not-an-image": (_write("a.png", b"this is text, not a picture"), "a.png", "is not a PNG or JPEG", 1),
    "gif-named-png": (_save("a.png", np.zeros((H, W, 3), np.uint8), format="GIF"), "a.png", "is a GIF image", 1),
    "truncated-png": (_truncated, "a.png", "truncated", 1),
    "empty-file": (_write("a.png", b""), "a.png", "empty file", 1),
    "grayscale-png": (_save("a.png", mode="L"), "a.png", "grayscale", 1),
    "rgba-png": (_save("a.png", mode="RGBA"), "a.png", "transparency", 1),
    "palette-png": (_save("a.png", mode="P"), "a.png", "palette", 1),
    "16-bit-png": (_write("a.png", _RGB16), "a.png", "16 bits per sample", 1),
    "cmyk-jpeg": (_save("c.jpg", mode="CMYK", remove="c.jpg"), "c.jpg", "CMYK", 1),
    "png-renamed-jpg": (_png_as_jpg, "c.jpg", "the content is PNG but the name ends in '.jpg'", 1),
    "huge-png-header": (_write("a.png", png_bytes(20000, 20000)), "a.png",
                        "is 20000x20000 = 400000000 pixels, over the limit of 40000000", 1),
    "two-files-one-image": (_save("a.jpg", np.zeros((H, W, 3), np.uint8)), "a.jpg and a.png",
                            "are two files for the image 'a'", 1),
    "uppercase-extension": (lambda r, k: (r / "a.png").rename(r / "a.PNG"), "a.PNG", "rename it to 'a.png'", 1),
    "jpeg-extension": (lambda r, k: (r / "c.jpg").rename(r / "c.jpeg"), "c.jpeg", "rename it to 'c.jpg'", 1),
    "subfolder": (_subfolder, "extra/", "is a subfolder", 2),
    "hidden-file": (_write(".secret", b"x"), ".secret", "is a hidden file", 1),
    "symlink-outside": (_link_outside, "a.png", "is a symbolic link", 1),
    "clutter-name-symlink": (lambda r, k: os.symlink("/etc/passwd", r / ".DS_Store"), ".DS_Store", "symbolic link", 1),
    "fifo": (_fifo, "notes", "is not a regular file", 1),
    "non-utf8-name": (_non_utf8_name, repr(b"b\xff.png"), "file name is not valid UTF-8", 1),
    "empty-run": (_empty, "team-r1", "holds no images", 2),
    "only-run-json": (_only_meta, "team-r1", "holds no images", 1),
    "run-json-missing": (_rm("run.json"), "run.json", "is missing", 1),
    "run-json-not-json": (_meta("{team: t}"), "run.json", "is not valid JSON", 1),
    "run-json-list": (_meta(json.dumps([META])), "run.json", "is a list, not a JSON object", 1),
    "run-json-missing-keys": (_meta_edit(seed=..., biqa=...), "run.json", "missing the key(s) biqa, seed", 1),
    "run-json-params-not-object": (_meta_edit(params="eps=4"), "run.json", "key 'params' must be an object", 1),
    "run-json-seed-bool": (_meta_edit(seed=True), "run.json", "key 'seed' must be an integer or null", 1),
    "run-json-empty-team": (_meta_edit(team=" "), "run.json", "key 'team' must be a non-empty string", 1),
    "run-json-bad-date": (_meta_edit(created="last tuesday"), "run.json", "key 'created' must be an ISO 8601", 1),
    "run-json-nan": (_meta('{"team": NaN}'), "run.json", "contains NaN", 1),
    "run-json-duplicate-key": (_meta('{"team": "a", "team": "b"}'), "run.json", "has the key 'team' twice", 1),
    "run-json-not-utf8": (_write("run.json", b'{"team": "\xff"}'), "run.json", "is not UTF-8 text", 1),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES), ids=list(FOLDER_CASES))
def test_broken_folder_run(kit: Kit, case: str) -> None:
    build, file, fragment, count = FOLDER_CASES[case]
    path = kit.folder()
    build(path, kit)
    run = validate_run(path, kit.originals)
    assert_issue(run, file, fragment, count)


def test_valid_run_with_run_json_extra_keys_and_null_seed(kit: Kit) -> None:
    path = kit.folder()
    _meta_edit(seed=None, notes="extra keys are kept")(path, kit)
    run = validate_run(path, kit.originals)
    assert run.valid, messages(run)
    assert run.meta["notes"] == "extra keys are kept"


def test_folder_run_limits(kit: Kit) -> None:
    path = kit.folder()
    total = sum(f.stat().st_size for f in path.iterdir())
    biggest = max(f.stat().st_size for f in path.iterdir() if f.suffix == ".png")
    assert_issue(validate_run(path, kit.originals, Limits(max_total_bytes=total - 1)), "team-r1",
                 f"holds {total} bytes, over the limit of {total - 1}", 1)
    run = validate_run(path, kit.originals, Limits(max_file_bytes=biggest - 1))
    assert any(f"bytes, over the limit of {biggest - 1}" in str(i) for i in run.issues), messages(run)
    assert_issue(validate_run(path, kit.originals, Limits(max_members=3)), "team-r1", "more than 3 entries", 1)
    assert_issue(validate_run(path, kit.originals, Limits(max_pixels=W * H - 1)), "a.png",
                 f"over the limit of {W * H - 1}", 3)


def test_run_that_is_a_symlink_is_refused(kit: Kit) -> None:
    real = kit.folder()
    link = kit.runs_dir / "linked"
    os.symlink(real, link)
    assert_issue(validate_run(link, kit.originals), "linked", "is a symbolic link", 1)


def test_run_with_non_utf8_name(kit: Kit) -> None:
    real = kit.folder()
    odd = os.path.join(os.fsencode(kit.runs_dir), b"team\xe9")
    os.rename(os.fsencode(real), odd)
    path = Path(os.fsdecode(odd))
    run = validate_run(path, kit.originals)
    assert run.name == "team\\xe9"
    assert_issue(run, repr(path.name), "the run name is not valid UTF-8", 1)


@pytest.mark.parametrize("char", INVISIBLE_CHARS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("where", ["end", "middle"])
def test_run_name_with_an_invisible_character_is_refused(kit: Kit, char: str, where: str) -> None:
    """`ifgsm` + U+034F (or a Hangul filler, a variation selector, ZWJ, ...) prints like `ifgsm`: refused."""
    name = "ifgsm" + char if where == "end" else "if" + char + "gsm"
    run = validate_run(kit.folder(name), kit.originals)
    label = "'" + name.replace(char, char.encode("unicode_escape").decode("ascii")) + "'"  # shown escaped
    assert_issue(run, label, f"the run name has invisible characters (U+{ord(char):04X} ", 1)
    assert "rename the run" in str(run.issues[0])
    assert validate_run(kit.folder("ifgsm"), kit.originals).valid  # the visible name is fine


def test_run_name_override(kit: Kit) -> None:
    run = validate_run(kit.folder("res"), kit.originals, name="team-r7")
    assert run.valid and run.name == "team-r7"


def test_folder_and_zip_of_the_same_run_are_both_refused(kit: Kit) -> None:
    zpath = kit.zipped("team-r1")
    folder = kit.folder("team-r1")
    for p in (folder, zpath):
        assert_issue(validate_run(p, kit.originals), p.name, "are two submissions of the run 'team-r1'", 1)


def test_plain_file_that_is_not_a_zip_name(kit: Kit) -> None:
    p = kit.runs_dir / "run.tar"
    p.write_bytes(b"x")
    assert_issue(validate_run(p, kit.originals), "run.tar", "neither a folder nor a .zip", 1)


# --- broken zips ---------------------------------------------------------------------------------------------

def _member(name: str, data: bytes = b"x") -> Callable[[zipfile.ZipFile], None]:
    return lambda zf: zf.writestr(zipfile.ZipInfo(name), data)


def _symlink_member(zf: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("team-z1/d.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "../../../etc/passwd")


def _duplicate(zf: zipfile.ZipFile) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zf.writestr("team-z1/a.png", b"second copy")




ZIP_CASES = {
    # id: (extra members, file in the issue, fragment, number of issues)
    "dotdot-member": (_member("team-z1/../../evil.png"), "team-z1/../../evil.png", "has a '..' component", 1),
    "absolute-member": (_member("/etc/evil.png"), "/etc/evil.png", "has an absolute path", 1),
    "drive-letter-member": (_member("C:/evil.png"), "C:/evil.png", "has an absolute path", 1),
    "backslash-member": (_member("team-z1\\..\\evil.png"), "team-z1\\..\\evil.png", "has a backslash", 1),
    "symlink-member": (_symlink_member, "team-z1/d.png", "is a symbolic link", 1),
    "duplicate-member": (_duplicate, "team-z1/a.png", "appears 2 times in the zip", 1),
    "nested-folder": (_member("team-z1/deep/b.png", b"x"), "deep/", "is a subfolder", 1),
    "extra-member": (_member("team-z1/zzz.png", png_bytes(W, H)), "zzz.png", "has no original", 1),
}


@pytest.mark.parametrize("case", list(ZIP_CASES), ids=list(ZIP_CASES))
def test_broken_zip_run(kit: Kit, case: str) -> None:
    extra, file, fragment, count = ZIP_CASES[case]
    run = validate_run(kit.zipped(extra=extra), kit.originals)
    assert_issue(run, file, fragment, count)


def test_zip_folder_named_unlike_the_zip(kit: Kit) -> None:
    run = validate_run(kit.zipped(top="other-name"), kit.originals)
    assert_issue(run, "other-name/", "is the zip's only folder but the zip is named 'team-z1.zip'", 1)
    assert sorted(run.images) == list(IDS)  # the files were still checked


def test_zip_with_encrypted_member(kit: Kit) -> None:
    path = kit.zipped()
    data = bytearray(path.read_bytes())
    # Set the "encrypted" flag (bit 0) of every member in the local headers and the central directory.
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos >= 0:
            data[pos + flag_at] |= 1
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))
    run = validate_run(path, kit.originals)
    assert not run.valid
    assert any(i.file == "team-z1/a.png" and "is encrypted" in i.problem for i in run.issues), messages(run)
    assert not run.images


def test_zip_member_lying_about_its_size(kit: Kit) -> None:
    path = kit.zipped()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("team-z1/a.png")
    data = bytearray(path.read_bytes())
    # Central directory entry of a.png: uncompressed size at offset 24; declare 10 bytes fewer.
    pos = data.find(b"PK\x01\x02")
    while data[pos + 46:pos + 46 + len("team-z1/a.png")] != b"team-z1/a.png":
        pos = data.find(b"PK\x01\x02", pos + 4)
    struct.pack_into("<I", data, pos + 24, info.file_size - 10)
    path.write_bytes(bytes(data))
    run = validate_run(path, kit.originals)
    assert_issue(run, "a.png", "cannot be read from the zip (BadZipFile: Bad CRC-32", 1)


def test_zip_with_non_ascii_name_not_marked_utf8(kit: Kit) -> None:
    path = kit.zipped(extra=_member("team-z1/bQ.png"))
    data = path.read_bytes()
    assert data.count(b"team-z1/bQ.png") == 2  # local header and central directory
    path.write_bytes(data.replace(b"team-z1/bQ.png", b"team-z1/b\x82.png"))  # cp437 e-acute, no UTF-8 flag
    run = validate_run(path, kit.originals)
    assert_issue(run, "team-z1/b\u00e9.png", "non-ASCII name that the zip does not mark as UTF-8", 1)


def test_zip_that_is_not_a_zip(kit: Kit) -> None:
    p = kit.runs_dir / "junk.zip"
    p.write_bytes(b"PK but not really a zip" * 10)
    assert_issue(validate_run(p, kit.originals), "junk.zip", "is not a zip archive", 1)


def test_zip_with_too_many_members(kit: Kit) -> None:
    path = kit.zipped(extra=lambda zf: [zf.writestr(f"team-z1/x{i}.txt", b"") for i in range(10)])
    run = validate_run(path, kit.originals, Limits(max_members=8))
    assert_issue(run, "team-z1.zip", "declares 14 members, over the limit of 8", 1)


def test_zip_over_total_size(kit: Kit) -> None:
    pad = lambda zf: zf.writestr("team-z1/pad.txt", b"a" * 100_000, zipfile.ZIP_DEFLATED)  # noqa: E731
    path = kit.zipped(extra=pad)  # compressible: declared size far above the size on disk
    with zipfile.ZipFile(path) as zf:
        total = sum(i.file_size for i in zf.infolist())
    assert path.stat().st_size < total - 1
    run = validate_run(path, kit.originals, Limits(max_total_bytes=total - 1))
    assert_issue(run, "team-z1.zip", f"declares {total} bytes uncompressed in all, over the limit", 1)


def test_empty_zip(kit: Kit) -> None:
    path = kit.runs_dir / "team-e.zip"
    zipfile.ZipFile(path, "w").close()
    run = validate_run(path, kit.originals)
    assert {(i.file, i.problem) for i in run.issues} == {
        ("run.json", "is missing"), ("team-e.zip", "holds no images")}


# --- zip bomb ------------------------------------------------------------------------------------------------

BOMB_BYTES = 200 * 1024**2


@pytest.fixture(scope="module")
def bomb_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zip whose a.png is 200 MB of zeros, deflated to ~200 KB, beside valid b.png, c.jpg, run.json."""
    d = tmp_path_factory.mktemp("bomb")
    path = d / "bomb.zip"
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("a.png")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            zero = bytes(1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                f.write(zero)
        for i in ("b", "c"):
            img = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            buf = io.BytesIO()
            img.save(buf, format="PNG" if i == "b" else "JPEG")
            zf.writestr(f"{i}.png" if i == "b" else "c.jpg", buf.getvalue())
        zf.writestr("run.json", json.dumps(META))
    assert path.stat().st_size < 1024**2
    return path


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes returned by every decompressing read from any zip member during the test."""
    seen: list[int] = []
    original = zipfile.ZipExtFile.read

    def read(self, n=-1):
        out = original(self, n)
        seen.append(len(out))
        return out
    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    return seen


def test_zip_bomb_refused_by_declared_size_without_reading(kit: Kit, bomb_zip: Path, counted_reads: list[int]) -> None:
    run = validate_run(bomb_zip, kit.originals)
    assert_issue(run, "a.png", f"declares {BOMB_BYTES} bytes uncompressed, over the limit of {64 * 1024**2}", 1)
    assert sum(counted_reads) < 1024**2  # the 200 MB were never inflated


def test_zip_bomb_refused_by_ratio_without_reading(kit: Kit, bomb_zip: Path, counted_reads: list[int]) -> None:
    run = validate_run(bomb_zip, kit.originals, Limits(max_file_bytes=512 * 1024**2))
    assert_issue(run, "a.png", "over the limit of 200x (a zip bomb)", 1)
    assert sum(counted_reads) < 1024**2


# --- isolation and no writes -----------------------------------------------------------------------------------

def test_broken_runs_do_not_affect_a_valid_run_validated_next(kit: Kit, bomb_zip: Path) -> None:
    alone = validate_run(kit.folder("good"), kit.originals)
    broken = kit.folder("bad")
    _link_outside(broken, kit)
    _png_as_jpg(broken, kit)
    _meta("[1, 2]")(broken, kit)
    originals = kit.originals
    results = [validate_run(p, originals) for p in (bomb_zip, broken, kit.zipped(extra=_symlink_member),
                                                    kit.runs_dir / "good")]
    assert [r.valid for r in results] == [False, False, False, True]
    after = results[-1]
    assert after.issues == [] and after.meta == alone.meta
    assert {i: r.sha256 for i, r in after.images.items()} == {i: r.sha256 for i, r in alone.images.items()}
    assert originals == kit.originals  # the shared index was not modified


def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Mode, size, mtime and content hash of everything under root (links not followed), except `skip`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != os.fsencode(skip)]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def test_validation_writes_nothing(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    kit.folder("good")
    kit.zipped("zipped")
    bad = kit.folder("bad")
    _link_outside(bad, kit)
    _subfolder(bad, kit)
    kit.zipped("evil", extra=_member("team-z1/../../evil.png"))
    cwd = kit.root / "cwd"
    scratch = kit.root / "scratch"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the zip-member adapter puts its private copies
    before = _snapshot(kit.root, skip=scratch)
    runs = [validate_run(p, kit.originals) for p in find_runs(kit.runs_dir)]
    assert [r.name for r in runs if r.valid] == ["good", "zipped"]
    for r in runs:
        for ref in r.images.values():
            ref.load()
    assert _snapshot(kit.root, skip=scratch) == before
    assert not any(scratch.iterdir()) and not any(cwd.iterdir())


def test_load_refuses_a_file_changed_after_validation(kit: Kit) -> None:
    path = kit.folder()
    run = validate_run(path, kit.originals)
    Image.fromarray(kit.pixels["a"]).save(path / "a.png")
    with pytest.raises(RunReadError, match="changed since it was validated"):
        run.images["a"].load()
    (path / "b.png").unlink()
    os.symlink(path / "a.png", path / "b.png")
    with pytest.raises(RunReadError, match="cannot be read again"):
        run.images["b"].load()


def test_decode_false_still_checks_headers(kit: Kit) -> None:
    path = kit.folder()
    _truncated(path, kit)
    assert validate_run(path, kit.originals, decode=False).valid  # header intact: found at load() time
    _save("b.png", mode="L")(path, kit)
    run = validate_run(path, kit.originals, decode=False)
    assert_issue(run, "b.png", "is L with 8 bits per sample, not 8-bit RGB", 1)


# --- finding runs and originals ----------------------------------------------------------------------------

def test_find_runs_lists_folders_zips_and_links_sorted(kit: Kit) -> None:
    kit.folder("b-run")
    kit.zipped("a-run")
    (kit.runs_dir / "C.ZIP").write_bytes(b"")
    os.symlink(kit.runs_dir / "b-run", kit.runs_dir / "d-link")
    (kit.runs_dir / "README.txt").write_text("not a run")
    (kit.runs_dir / ".hidden").mkdir()
    (kit.runs_dir / "__MACOSX").mkdir()
    names = [p.name for p in find_runs(kit.runs_dir)]
    assert names == ["C.ZIP", "a-run.zip", "b-run", "d-link"]


def test_find_runs_without_a_folder(tmp_path: Path) -> None:
    with pytest.raises(RunsDirError, match="runs folder not found"):
        find_runs(tmp_path / "nope")


def test_index_originals(kit: Kit) -> None:
    headers = kit.originals
    assert list(headers) == list(IDS)
    assert (headers["a"].width, headers["a"].height, headers["a"].format) == (W, H, "PNG")


@pytest.mark.parametrize("case", ["missing", "empty", "broken", "grayscale"])
def test_index_originals_refuses(tmp_path: Path, case: str) -> None:
    d = tmp_path / "orig"
    if case != "missing":
        d.mkdir()
        (d / "notes.txt").write_text("not an original")
    if case == "broken":
        (d / "x.png").write_bytes(b"garbage")
    if case == "grayscale":
        Image.new("L", (4, 4)).save(d / "g.png")
    fragment = {"missing": "originals folder not found", "empty": "holds no <id>.png originals",
                "broken": "x.png: is not a PNG or JPEG", "grayscale": "not 8-bit RGB PNG"}[case]
    with pytest.raises(OriginalsError, match=fragment.replace(".", r"\.")) as err:
        index_originals(d)
    assert str(d) in str(err.value)


@pytest.mark.parametrize("locator_offset", ["wrong", "right"])
def test_zip64_records_that_zipfile_would_trust_are_capped_before_parsing(locator_offset):
    """A crafted end record declares 1 member while a zip64 record (which zipfile reads regardless) declares
    5000: the archive is refused from the end records, before zipfile parses the central directory."""
    import io
    import struct

    from evaluator.contracts.run_folder import Limits
    from evaluator.intake.safe_zip import open_checked

    n = 5000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"f{i:05d}", b"")
    raw = buf.getvalue()
    eocd = raw.rfind(b"PK\x05\x06")
    _, _, _, _, _, cd_size, cd_off, _ = struct.unpack("<4s4H2LH", raw[eocd:eocd + 22])
    body = raw[:eocd]
    z64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_off)
    offset = 0 if locator_offset == "wrong" else len(body)
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset, 1)
    fake_eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 46, cd_off, 0)
    zf, entries, issues = open_checked(Path("evil.zip"), io.BytesIO(body + z64 + loc + fake_eocd),
                                       Limits(max_members=100))
    assert zf is None and not entries and len(issues) == 1
    expected = "offset disagrees" if locator_offset == "wrong" else "declares 5000 members"
    assert expected in str(issues[0])
