"""The bytes a juror's browser receives for an image.

Candidates (`blind_screen`): decoded to RGB pixels exactly as Pillow reads the organizer's file (`candidate_pixels`;
Lanczos down to `GRID_MAX_SIDE` only when larger), then written as an uncompressed PNG (`stored_png`): stored
deflate blocks, filter 0 on every row, a layout written here byte by byte. Its length is a function of the
dimensions alone (`png_length`), and every byte but the pixels, their two checksums (Adler-32, IDAT CRC) and one
private chunk is the same for all candidates of one size, so nothing but the pixels tells runs apart: not the
size (a JPEG's size depends on the content, and padding after its end marker can be found again), not the
encoder's choices, not the organizer's deterministic JPEG bytes (a participant who is also a juror could match
those byte for byte). The private ancillary chunk `juRy` (decoders skip it) carries 32 bytes of
HMAC-SHA256(secret, juror | candidate): since Streamlit names a media file by a hash of its bytes, the URL of a
candidate differs between jurors and cannot be predicted without the store's secret. Cost: 3 bytes per pixel
(about 590 KB for a 512x384 candidate).

The reference original (`served_bytes`, the same for every candidate and juror): JPEG files within
`GRID_MAX_SIDE` are served losslessly: the marker segments are copied except APPn and COM (EXIF, XMP, ICC,
comments, vendor data) and anything after EOI; only APP0 "JFIF" and APP14 "Adobe" are kept since they carry
colour-transform flags, not metadata. Larger images and non-JPEG files are decoded and re-encoded without
metadata: Lanczos down to `GRID_MAX_SIDE` when larger, then JPEG quality 95 4:4:4 for JPEG input and lossless
PNG for anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from evaluator.common.errors import JuryPackageError

GRID_MAX_SIDE = 1024  # at most Streamlit's widest image (1460 px), which st.image would otherwise re-encode
SCREEN_SIDE = 512  # the candidate grid: a column is at most ~300 CSS px wide; 512 px stays sharp at 1.7x zoom
MAX_INPUT_PIXELS = 40_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEY_CHUNK = b"juRy"  # ancillary (j), private (u), reserved bit clear (R), safe to copy (y)
KEY_BYTES = 32  # HMAC-SHA256: 256 bits per candidate and juror
STORED_BLOCK = 65535  # the largest stored deflate block


@dataclass(frozen=True)
class Pixels:
    """An 8-bit RGB image: `rgb` holds width * height * 3 bytes, row by row."""

    width: int
    height: int
    rgb: bytes


class ServedImageError(JuryPackageError, ValueError):
    """An image file of the package that cannot be served; the message names the file."""


_KEEP_APP = {0xE0: b"JFIF\x00", 0xEE: b"Adobe"}


def strip_jpeg_metadata(data: bytes, *, source: str = "<bytes>") -> bytes:
    """Lossless copy of a JPEG without APPn (except JFIF/Adobe) and COM segments or trailing bytes."""
    if data[:2] != b"\xff\xd8":
        raise ServedImageError(f"{source}: not a JPEG (no SOI marker); re-export it as JPEG.")
    out = bytearray(b"\xff\xd8")
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ServedImageError(f"{source}: corrupt JPEG (expected a marker at byte {i}).")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI: drop anything after it
            out += b"\xff\xd9"
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            out += bytes([0xFF, marker])
            continue
        if i + 2 > n:
            raise ServedImageError(f"{source}: truncated JPEG segment at byte {i}.")
        length = int.from_bytes(data[i:i + 2], "big")
        segment = data[i:i + length]
        if length < 2 or len(segment) != length:
            raise ServedImageError(f"{source}: truncated JPEG segment at byte {i}.")
        i += length
        drop = (0xE0 <= marker <= 0xEF and not (marker in _KEEP_APP and segment[2:].startswith(_KEEP_APP[marker]))) \
            or marker == 0xFE
        if not drop:
            out += bytes([0xFF, marker]) + segment
        if marker == 0xDA:  # entropy-coded data follows until the next real marker
            start = i
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    raise ServedImageError(f"{source}: JPEG scan data has no end (no EOI).")
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffed byte or restart marker
                    i = j + 2
                    continue
                break  # a real marker (possibly after fill bytes) starts at j
            out += data[start:j]
            i = j
    raise ServedImageError(f"{source}: JPEG ends without EOI marker.")


def _decoded(path: Path, data: bytes, max_side: int, *, jpeg_as_is: bool = False
             ) -> tuple[Image.Image | None, str | None]:
    """(RGB image as Pillow decodes `data`, Lanczos down to `max_side` when larger; the file's format).

    With `jpeg_as_is`, a JPEG within `max_side` is not decoded: (None, "JPEG").
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            fmt = im.format
            if width * height > MAX_INPUT_PIXELS:
                raise ServedImageError(f"{path}: {width}x{height} is larger than {MAX_INPUT_PIXELS} pixels.")
            if jpeg_as_is and fmt == "JPEG" and max(width, height) <= max_side:
                return None, fmt
            rgb = im.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ServedImageError(f"{path}: cannot decode ({exc}); regenerate the jury package.") from exc
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    return rgb, fmt


def served_bytes(path: Path, *, max_side: int = GRID_MAX_SIDE) -> tuple[bytes, str]:
    """(bytes, mime type) to send to the browser for this image file."""
    data = Path(path).read_bytes()
    rgb, fmt = _decoded(path, data, max_side, jpeg_as_is=True)
    if rgb is None:
        return strip_jpeg_metadata(data, source=str(path)), "image/jpeg"
    rgb = Image.frombytes("RGB", rgb.size, rgb.tobytes())  # a fresh image: Pillow re-saves info["comment"] etc.
    buf = io.BytesIO()
    if fmt == "JPEG":
        rgb.save(buf, format="JPEG", quality=95, subsampling=0)
        return buf.getvalue(), "image/jpeg"
    rgb.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def candidate_pixels(path: Path, *, max_side: int = GRID_MAX_SIDE) -> Pixels:
    """The RGB pixels of a candidate file as Pillow decodes it (Lanczos down to `max_side` when larger)."""
    rgb, _ = _decoded(path, Path(path).read_bytes(), max_side)
    return Pixels(rgb.width, rgb.height, rgb.tobytes())


def png_length(width: int, height: int) -> int:
    """Bytes of `stored_png` for a width x height image: a function of the dimensions only.

    raw = height * (1 + 3 width) (a filter byte per row), blocks = ceil(raw / 65535);
    length = 8 (signature) + 25 (IHDR) + 12 + KEY_BYTES (key chunk) + 12 + 2 + 5 blocks + raw + 4 (IDAT) + 12 (IEND).
    """
    raw = height * (1 + 3 * width)
    blocks = -(-raw // STORED_BLOCK)
    return 8 + 25 + 12 + KEY_BYTES + 12 + 2 + 5 * blocks + raw + 4 + 12


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


@dataclass(frozen=True)
class PreparedPng:
    """The juror-independent parts of a `stored_png`: everything before the key chunk (signature, IHDR) and after
    it (IDAT, IEND). Computed once per candidate and package (the rows, the stored blocks and both checksums);
    a juror's bytes are then `with_key(key)`, one copy."""

    width: int
    height: int
    head: bytes
    tail: bytes

    def with_key(self, key: bytes) -> bytes:
        """head + the `juRy` chunk holding `key` + tail: exactly `stored_png(pixels, key)`."""
        if len(key) != KEY_BYTES:
            raise ValueError(f"the key chunk holds exactly {KEY_BYTES} bytes, got {len(key)}")
        return b"".join([self.head, _chunk(KEY_CHUNK, key), self.tail])


def prepare_png(pixels: Pixels) -> PreparedPng:
    """The `PreparedPng` of `pixels` (the layout of `stored_png`)."""
    width, height = pixels.width, pixels.height
    row = 3 * width
    if len(pixels.rgb) != row * height:
        raise ValueError(f"{len(pixels.rgb)} bytes of pixels for {width}x{height} RGB")
    rows = np.zeros((height, 1 + row), np.uint8)
    rows[:, 1:] = np.frombuffer(pixels.rgb, np.uint8).reshape(height, row)
    raw = rows.tobytes()
    stream = [b"\x78\x01"]  # zlib header: deflate, 32 KiB window, no dictionary, "fastest" level
    view = memoryview(raw)
    for start in range(0, len(raw), STORED_BLOCK):
        block = view[start:start + STORED_BLOCK]
        final = start + STORED_BLOCK >= len(raw)
        stream += [struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF), block]
    stream.append(struct.pack(">I", zlib.adler32(raw)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PreparedPng(width, height, PNG_SIGNATURE + _chunk(b"IHDR", ihdr),
                       _chunk(b"IDAT", b"".join(stream)) + _chunk(b"IEND", b""))


def stored_png(pixels: Pixels, key: bytes) -> bytes:
    """A PNG of `pixels` (8-bit RGB, no interlace) whose only variable parts are the pixels and `key`.

    Chunks: IHDR, a private ancillary `juRy` chunk holding `key` (KEY_BYTES bytes; decoders skip it), one IDAT,
    IEND. The IDAT is a zlib stream of stored (uncompressed) deflate blocks of STORED_BLOCK bytes (the last one
    shorter), every row with filter 0 (None), then the Adler-32 of the rows. Written here byte by byte rather than
    by a zlib library, so the layout never depends on a library version: len = `png_length(width, height)`.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"the key chunk holds exactly {KEY_BYTES} bytes, got {len(key)}")
    out = prepare_png(pixels).with_key(key)
    assert len(out) == png_length(pixels.width, pixels.height)
    return out


def candidate_key(secret: bytes, juror: str, candidate: str) -> bytes:
    """HMAC-SHA256(secret, juror | candidate): the bytes of the key chunk this juror receives for this candidate."""
    return hmac.new(secret, f"{juror}|{candidate}".encode("utf-8"), hashlib.sha256).digest()


def blind_screen(pixels: Mapping[str, Pixels], secret: bytes, juror: str) -> dict[str, bytes]:
    """The bytes one juror receives for the candidates (id -> decoded pixels) of one image.

    candidate c -> `stored_png(pixels[c], candidate_key(secret, juror, c))`. Every candidate of an image has the
    original's dimensions, so all have one length; deterministic in (secret, juror, c), so a reload or a
    restarted server sends the same bytes (the secret lives in the vote store).
    """
    return {cid: stored_png(p, candidate_key(secret, juror, cid)) for cid, p in pixels.items()}
