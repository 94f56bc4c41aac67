"""The organizer's JPEG codec: jpeglib 1.0.2 with a pinned libjpeg build, quality and chroma subsampling.

Every submitted image is compressed with this codec before it is scored (`OrganizerCodec.roundtrip`). With the
task defaults (turbo210, quality 90, 4:2:0) the files are byte-identical to Pillow's `save(..., "JPEG",
quality=90)`. Quantization tables follow the IJG scaling of the Annex K tables:
S = 5000 / Q if Q < 50 else 200 - 2 Q;  table = clip(floor((S * base + 50) / 100), 1, 255), baseline
(8-bit) tables at every quality, like Pillow.

jpeglib selects the libjpeg build process-wide. Every jpeglib call here runs inside `libjpeg(build)`, which
takes a module lock and sets the build, so codecs with different builds can be used from several threads.
jpeglib reads and writes paths only: every call writes one file into the process's private scratch folder
(`scratch_dir`: mode 0700, in /dev/shm when that is a writable folder, else the system temp folder; created on
first use, re-created if it vanished, removed at interpreter exit) and deletes that file before it returns.
One folder per process instead of one per call: creating and removing a folder per call cost up to ~11 ms under
load. The files are named per thread and every call runs under the jpeglib lock, so calls never share a file.
Decoding uses the integer slow DCT (JDCT_ISLOW) explicitly, so it is deterministic for a given build.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jpeglib
import numpy as np

from evaluator.common.atomic import write_bytes_atomic
from evaluator.common.errors import JpegError

if TYPE_CHECKING:
    from typing import Any as TaskConfig  # evaluator.config.TaskConfig: not imported (config imports this module)

#: libjpeg builds that jpeglib 1.0.2 bundles (see `jpeglib.version.LIBJPEG_VERSIONS`); `jpeg.libjpeg` of task.toml.
LIBJPEG_BUILDS = (
    "6b", "7", "8", "8a", "8b", "8c", "8d", "9", "9a", "9b", "9c", "9d", "9e", "9f",
    "turbo120", "turbo130", "turbo140", "turbo150", "turbo200", "turbo210",
    "mozjpeg101", "mozjpeg201", "mozjpeg300", "mozjpeg403",
)
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")

#: libjpeg sampling factors per subsampling, as jpeglib wants them: [[Y_v, Y_h], [Cb_v, Cb_h], [Cr_v, Cr_h]].
SAMPLING_FACTORS: dict[str, tuple[tuple[int, int], ...]] = {
    "4:4:4": ((1, 1), (1, 1), (1, 1)),
    "4:2:2": ((1, 2), (1, 1), (1, 1)),
    "4:2:0": ((2, 2), (1, 1), (1, 1)),
}

_LOCK = threading.RLock()


class CodecError(JpegError, ValueError):
    """Bad codec settings, bad input to the codec, or JPEG data the codec cannot read."""


@contextlib.contextmanager
def libjpeg(build: str) -> Iterator[None]:
    """Hold the jpeglib lock with `build` selected; the one place that calls `jpeglib.version.set`."""
    with _LOCK:
        jpeglib.version.set(build)
        yield


_SCRATCH_LOCK = threading.Lock()
_SCRATCH: dict[int, Path] = {}  # pid -> this process's scratch folder (a forked child makes its own)
SHM_DIR = Path("/dev/shm")


def _scratch_parent() -> str | None:
    """/dev/shm (memory-backed) when it is a writable folder, else None (the system temp folder)."""
    return str(SHM_DIR) if SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK | os.X_OK) else None


def _remove_scratch(pid: int) -> None:
    if os.getpid() == pid:
        d = _SCRATCH.pop(pid, None)
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)


def _is_private_dir(d: Path) -> bool:
    """`d` is still our folder: a real directory (not a link), owned by us, mode 0700."""
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700


def scratch_dir() -> Path:
    """This process's private scratch folder for jpeglib's files (see the module docstring)."""
    pid = os.getpid()
    with _SCRATCH_LOCK:
        d = _SCRATCH.get(pid)
        if d is None or not _is_private_dir(d):
            try:
                d = Path(tempfile.mkdtemp(prefix="pp-codec-", dir=_scratch_parent()))
            except OSError:
                d = Path(tempfile.mkdtemp(prefix="pp-codec-"))
            if pid not in _SCRATCH:
                atexit.register(_remove_scratch, pid)
            _SCRATCH[pid] = d
        return d


@contextlib.contextmanager
def _scratch(name: str) -> Iterator[Path]:
    """A path `name` in the scratch folder, private to this thread; the file is deleted on the way out."""
    path = scratch_dir() / f"{threading.get_ident()}-{name}"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class DCTCoefficients:
    """Quantized DCT coefficients of a YCbCr JPEG.

    `Y`, `Cb`, `Cr`: int16 blocks (rows of blocks, columns of blocks, 8, 8), natural (row-major) order;
    `qt`: uint16 (2, 8, 8) tables [luma, chroma] (None: the codec's own); `height`, `width`: image size in pixels.
    Baseline range (what libjpeg can entropy-code for 8-bit data): DC -1024..1023, AC -1023..1023.
    """

    Y: np.ndarray
    Cb: np.ndarray
    Cr: np.ndarray
    qt: np.ndarray | None
    height: int
    width: int


def block_grid(height: int, width: int, subsampling: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Block-grid shapes libjpeg uses: luma ceil(size/8); chroma ceil(size * c / (8 * max)) per axis."""
    (yv, yh), (cv, ch), _ = SAMPLING_FACTORS[subsampling]
    luma = (math.ceil(height / 8), math.ceil(width / 8))
    chroma = (math.ceil(height * cv / (8 * yv)), math.ceil(width * ch / (8 * yh)))
    return luma, chroma


def _check_rgb(rgb: object, what: str) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {getattr(rgb, 'shape', '')}".strip()
        raise ValueError(f"{what}: expected a numpy (H, W, 3) uint8 RGB array, got {desc}; "
                         "convert with evaluator.common.imageio.to_uint8 or load with evaluator.common.imageio.load_rgb")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{what}: image has zero size {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _write_spatial(path: Path, rgb: np.ndarray, quality: int, subsampling: str) -> None:
    """Compress with the IJG defaults plus FORCE_BASELINE (tables clipped to 255, as Pillow and cjpeg's
    jpeg_set_defaults do; jpeglib otherwise writes 16-bit extended tables below quality 25). Caller holds the lock.
    """
    jpeg = jpeglib.from_spatial(rgb)
    jpeg.samp_factor = np.array(SAMPLING_FACTORS[subsampling], dtype=np.int32)
    jpeg.write_spatial(str(path), qt=quality, dct_method=jpeglib.DCTMethod.JDCT_ISLOW, flags=["+FORCE_BASELINE"])


@functools.lru_cache(maxsize=64)
def _quant_tables(build: str, quality: int) -> np.ndarray:
    """The tables `build` writes at `quality` (jpeglib's qf_to_qt ignores its argument, so write and read)."""
    with libjpeg(build), _scratch("probe.jpg") as path:
        _write_spatial(path, np.full((16, 16, 3), 128, np.uint8), quality, "4:4:4")
        jpeg = jpeglib.read_dct(str(path))
        jpeg.load()
        qt = np.array(jpeg.qt, dtype=np.uint16)
    if qt.shape != (2, 8, 8):
        raise CodecError(f"libjpeg {build} wrote {qt.shape[0]} quantization tables at quality {quality}, expected 2")
    qt.setflags(write=False)
    return qt


@dataclass(frozen=True)
class OrganizerCodec:
    """JPEG compression as the organizer applies it: `quality` 1..100, `subsampling`, libjpeg `libjpeg` build."""

    quality: int = 90
    subsampling: str = "4:2:0"
    libjpeg: str = "turbo210"

    def __post_init__(self) -> None:
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise CodecError(f"OrganizerCodec: quality must be an integer 1..100, got {self.quality!r}")
        if self.subsampling not in SAMPLING_FACTORS:
            raise CodecError(
                f"OrganizerCodec: subsampling {self.subsampling!r} is not one of {', '.join(SUBSAMPLINGS)}"
            )
        if self.libjpeg not in LIBJPEG_BUILDS:
            raise CodecError(
                f"OrganizerCodec: libjpeg build {self.libjpeg!r} is not one of {', '.join(LIBJPEG_BUILDS)}"
            )
        if self.libjpeg not in jpeglib.version.versions():
            raise CodecError(f"OrganizerCodec: libjpeg build {self.libjpeg!r} is not bundled with this jpeglib "
                             f"installation; reinstall jpeglib==1.0.2")

    @classmethod
    def from_task(cls, cfg: TaskConfig) -> OrganizerCodec:
        """The codec of a task's `[jpeg]` rules."""
        return cls(quality=cfg.jpeg.quality, subsampling=cfg.jpeg.subsampling, libjpeg=cfg.jpeg.libjpeg)

    # -- pixels ------------------------------------------------------------------------------------------------
    def _write(self, path: Path, rgb: np.ndarray) -> None:
        """Caller holds `libjpeg(self.libjpeg)`."""
        _write_spatial(path, rgb, self.quality, self.subsampling)

    def _read(self, path: Path) -> np.ndarray:
        """Caller holds `libjpeg(self.libjpeg)`."""
        try:
            jpeg = jpeglib.read_spatial(str(path), dct_method=jpeglib.DCTMethod.JDCT_ISLOW)
            rgb = np.array(jpeg.spatial, dtype=np.uint8)
        except (OSError, RuntimeError, ValueError) as exc:
            raise CodecError(f"{path.name}: libjpeg {self.libjpeg} cannot decode this JPEG ({exc})") from exc
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise CodecError(f"{path.name}: decoded to shape {rgb.shape}, expected an RGB (H, W, 3) image")
        return rgb

    def compress(self, rgb: np.ndarray) -> bytes:
        """JPEG bytes of (H, W, 3) uint8 RGB."""
        rgb = _check_rgb(rgb, "OrganizerCodec.compress")
        with libjpeg(self.libjpeg), _scratch("out.jpg") as path:
            self._write(path, rgb)
            return path.read_bytes()

    def decompress(self, data: bytes) -> np.ndarray:
        """(H, W, 3) uint8 RGB of JPEG bytes; refuses data without the JPEG start and end markers."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"OrganizerCodec.decompress: expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if not data.startswith(b"\xff\xd8") or not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise CodecError("OrganizerCodec.decompress: data is not a complete JPEG (missing SOI or EOI marker); "
                             "pass the bytes that compress() returned")
        with libjpeg(self.libjpeg), _scratch("in.jpg") as path:
            path.write_bytes(data)
            return self._read(path)

    def roundtrip(self, rgb: np.ndarray) -> np.ndarray:
        """decompress(compress(rgb)): the image the organizer scores."""
        rgb = _check_rgb(rgb, "OrganizerCodec.roundtrip")
        with libjpeg(self.libjpeg), _scratch("rt.jpg") as path:
            self._write(path, rgb)
            return self._read(path)

    def roundtrip_bytes(self, rgb: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(compress(rgb), decompress(compress(rgb))): the bytes the organizer scores and their pixels.

        In memory through Pillow when `pillow_reproduces(self)` (its libjpeg writes the same bytes and decodes the
        same pixels as this codec's build on the probe images; checked once per process), else through jpeglib:
        the same result, without jpeglib's files (about 3x faster).

        Why Pillow may stand in for the pinned build: both run libjpeg-turbo's accurate integer DCT, baseline
        Huffman tables, the same quality tables and fancy upsampling, whose SIMD and C code paths libjpeg-turbo
        keeps bit-identical; what a different version, CPU or build could still change shows on the probes
        (`_probe_images`: odd sizes, strips, SIMD-width remainders, saturated chroma, a pixel checkerboard, noise),
        which are checked on this machine, at this quality and subsampling, before Pillow is used. A build that
        differs on one probe is not used at all. `tests/test_codec_roundtrip_bytes.py` checks adversarial images
        (strips, checkerboards, binary noise, odd sizes) at quality 1, 90 and 100 against the pinned build."""
        rgb = _check_rgb(rgb, "OrganizerCodec.roundtrip_bytes")
        if not pillow_reproduces(self):
            data = self.compress(rgb)
            return data, self.decompress(data)
        data = _pillow_compress(rgb, self.quality, self.subsampling)
        return data, _pillow_decompress(data)

    def write_jpeg(self, path: str | Path, rgb: np.ndarray) -> None:
        """Write compress(rgb) to `path` atomically (temporary file in the same folder, then replace)."""
        write_bytes_atomic(Path(path), self.compress(rgb))

    # -- DCT domain --------------------------------------------------------------------------------------------
    def quant_tables(self) -> np.ndarray:
        """(2, 8, 8) uint16 [luma, chroma] tables this codec writes, natural (row-major) order."""
        return _quant_tables(self.libjpeg, self.quality).copy()

    def read_dct(self, path: str | Path) -> DCTCoefficients:
        """Quantized coefficients and tables of a YCbCr JPEG file (lossless, no decoding)."""
        p = Path(path)
        if not p.is_file():
            raise CodecError(f"{p}: no such JPEG file")
        with libjpeg(self.libjpeg):
            try:
                jpeg = jpeglib.read_dct(str(p))
                jpeg.load()
            except (OSError, RuntimeError, ValueError) as exc:
                raise CodecError(f"{p}: libjpeg {self.libjpeg} cannot read its DCT coefficients ({exc})") from exc
            if jpeg.Cb is None or jpeg.Cr is None or jpeg.K is not None:
                raise CodecError(f"{p}: not a 3-component YCbCr JPEG; read_dct handles colour JPEGs only")
            luma_no, cb_no, cr_no = (int(i) for i in jpeg.quant_tbl_no)
            if cb_no != cr_no:
                raise CodecError(f"{p}: Cb and Cr use different quantization tables; not supported")
            qt = np.stack([jpeg.qt[luma_no], jpeg.qt[cb_no]]).astype(np.uint16)
            return DCTCoefficients(
                Y=np.array(jpeg.Y, dtype=np.int16), Cb=np.array(jpeg.Cb, dtype=np.int16),
                Cr=np.array(jpeg.Cr, dtype=np.int16), qt=qt, height=int(jpeg.height), width=int(jpeg.width),
            )

    def _check_coeffs(self, coeffs: DCTCoefficients) -> None:
        luma, chroma = block_grid(coeffs.height, coeffs.width, self.subsampling)
        for name, arr, grid in (("Y", coeffs.Y, luma), ("Cb", coeffs.Cb, chroma), ("Cr", coeffs.Cr, chroma)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int16 or arr.shape != (*grid, 8, 8):
                raise CodecError(
                    f"DCT coefficients {name}: expected int16 {(*grid, 8, 8)} for a {coeffs.width}x{coeffs.height} "
                    f"image at {self.subsampling}, got {getattr(arr, 'dtype', type(arr).__name__)} "
                    f"{getattr(arr, 'shape', '')}"
                )
            dc, ac = arr[..., 0, 0], arr.reshape(*grid, 64)[..., 1:]
            if dc.min() < -1024 or dc.max() > 1023 or np.abs(ac).max() > 1023:
                raise CodecError(
                    f"DCT coefficients {name}: outside the baseline range (DC -1024..1023, AC -1023..1023; "
                    f"got DC {dc.min()}..{dc.max()}, AC max |{np.abs(ac).max()}|); libjpeg would write a corrupt "
                    "file: clip the coefficients"
                )
        tables = self.quant_tables()
        if coeffs.qt is not None and not np.array_equal(np.asarray(coeffs.qt), tables):
            raise CodecError(
                "DCT coefficients carry quantization tables that differ from this codec's "
                f"(quality {self.quality}, {self.libjpeg}); requantize them or use a codec with matching quality"
            )

    def _write_dct(self, path: Path, coeffs: DCTCoefficients) -> None:
        """Caller holds `libjpeg(self.libjpeg)`."""
        jpeg = jpeglib.from_dct(coeffs.Y, coeffs.Cb, coeffs.Cr, qt=self.quant_tables())
        jpeg.height, jpeg.width = coeffs.height, coeffs.width
        jpeg.samp_factor = np.array(SAMPLING_FACTORS[self.subsampling], dtype=np.int32)
        jpeg.write_dct(str(path))

    def write_dct(self, path: str | Path, coeffs: DCTCoefficients) -> None:
        """Write coefficients as a JPEG file with this codec's tables and subsampling (lossless)."""
        self._check_coeffs(coeffs)
        with libjpeg(self.libjpeg), _scratch("coeffs.jpg") as tmp:
            self._write_dct(tmp, coeffs)
            data = tmp.read_bytes()
        write_bytes_atomic(Path(path), data)

    def decode_dct(self, coeffs: DCTCoefficients) -> np.ndarray:
        """(H, W, 3) uint8 RGB that this codec's libjpeg decodes from the coefficients."""
        self._check_coeffs(coeffs)
        with libjpeg(self.libjpeg), _scratch("coeffs.jpg") as path:
            self._write_dct(path, coeffs)
            return self._read(path)


# -- Pillow, where it reproduces the pinned build ----------------------------------------------------------------
_PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _pillow_compress(rgb: np.ndarray, quality: int, subsampling: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=quality, subsampling=_PILLOW_SUBSAMPLING[subsampling],
                                     optimize=False, progressive=False)
    return buf.getvalue()


def _pillow_decompress(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode != "RGB":
            raise CodecError(f"Pillow decoded this JPEG as {im.mode}, expected RGB")
        return np.asarray(im, dtype=np.uint8).copy()


def _probe_images() -> list[np.ndarray]:
    """Deterministic probes for `pillow_reproduces`, chosen where a libjpeg build could differ from another: noise
    (full-range and binary), smooth ramps and rings, saturated colour blocks and stripes (chroma at its limits),
    flat and grey images, a one-pixel checkerboard (the largest DCT coefficients: clamping in the inverse DCT),
    sizes with partial MCUs at both edges, one-pixel-high and -wide strips, and widths that leave a remainder in
    every SIMD register width (33, 65, 131) for colour conversion, downsampling and fancy upsampling."""
    rng = np.random.default_rng(20201215)
    yy, xx = np.mgrid[0:77, 0:101]
    ramp = np.stack([(xx * 2.5) % 256, (yy * 3.3) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    blocks = np.zeros((48, 64, 3), np.uint8)
    blocks[:, :20] = (255, 0, 0)
    blocks[:, 20:40] = (0, 255, 255)
    blocks[24:, 40:] = 255
    rings = (127.5 + 127.5 * np.sin(((xx - 50.0) ** 2 + (yy - 38.0) ** 2) / 40.0))[..., None].repeat(3, -1)
    cy, cx = np.mgrid[0:33, 0:65]
    checker = (((cy + cx) % 2) * 255).astype(np.uint8)
    stripes = np.zeros((17, 131, 3), np.uint8)
    stripes[..., 0] = 255 * ((np.arange(131) // 3) % 2)
    stripes[..., 2] = 255 * ((np.arange(17)[:, None] // 2) % 2)
    return [rng.integers(0, 256, (45, 67, 3), dtype=np.uint8), ramp, blocks, rings.astype(np.uint8),
            rng.integers(100, 140, (16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (9, 13, 3), dtype=np.uint8),
            np.stack([checker, 255 - checker, checker], -1), stripes,
            (rng.integers(0, 2, (31, 65, 3)) * 255).astype(np.uint8),
            np.repeat(rng.integers(0, 256, (23, 33, 1), dtype=np.uint8), 3, -1),
            rng.integers(0, 256, (1, 131, 3), dtype=np.uint8), rng.integers(0, 256, (33, 1, 3), dtype=np.uint8),
            np.full((7, 9, 3), (250, 3, 129), np.uint8)]


_PILLOW_OK: dict[tuple[str, int, str], bool] = {}


def pillow_reproduces(codec: OrganizerCodec) -> bool:
    """True when Pillow's JPEG writer and reader give byte-identical files and identical pixels to `codec`'s
    libjpeg build on every probe image (`_probe_images`) at its quality and subsampling; cached per process."""
    key = (codec.libjpeg, codec.quality, codec.subsampling)
    if key not in _PILLOW_OK:
        ok = True
        try:
            for rgb in _probe_images():
                ours = codec.compress(rgb)
                theirs = _pillow_compress(rgb, codec.quality, codec.subsampling)
                if ours != theirs or not np.array_equal(codec.decompress(ours), _pillow_decompress(ours)):
                    ok = False
                    break
        except Exception:  # noqa: BLE001 - any Pillow problem: use jpeglib
            ok = False
        _PILLOW_OK[key] = ok
    return _PILLOW_OK[key]
