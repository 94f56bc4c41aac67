"""The bytes a juror's browser receives for an image: metadata stripped, pre-sized for the grid.

JPEG files within `GRID_MAX_SIDE` are served losslessly: the marker segments are copied except APPn and COM
(EXIF, XMP, ICC, comments, vendor data) and anything after EOI; only APP0 "JFIF" and APP14 "Adobe" are kept
since they carry colour-transform flags, not metadata. Larger images and non-JPEG files are decoded and
re-encoded without metadata: Lanczos down to `GRID_MAX_SIDE` when larger, then JPEG quality 95 4:4:4 for
JPEG input and lossless PNG for anything else (the originals).

`blind_screen` then makes the candidates of one image indistinguishable except by their pixels: every
candidate's bytes are padded after the end marker (EOI; decoders stop there, so the pixels are unchanged) to
one common length, the longest + `PAD_MIN`, with filler keyed by HMAC-SHA256(secret, juror | candidate). The
sizes (and Content-Length) are then equal, and since Streamlit names a media file by a hash of its bytes, the
URL of a candidate differs between jurors and cannot be predicted without the store's secret (a participant
who is also a juror cannot compute it from the public kit and their own submission).
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

GRID_MAX_SIDE = 1024
MAX_INPUT_PIXELS = 40_000_000
PAD_MIN = 32  # filler bytes every candidate gets at least (7 random bits each: 224 bits)


class ServedImageError(ValueError):
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


def served_bytes(path: Path, *, max_side: int = GRID_MAX_SIDE) -> tuple[bytes, str]:
    """(bytes, mime type) to send to the browser for this image file."""
    data = Path(path).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            fmt = im.format
            if width * height > MAX_INPUT_PIXELS:
                raise ServedImageError(f"{path}: {width}x{height} is larger than {MAX_INPUT_PIXELS} pixels.")
            if fmt == "JPEG" and max(width, height) <= max_side:
                return strip_jpeg_metadata(data, source=str(path)), "image/jpeg"
            rgb = im.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ServedImageError(f"{path}: cannot decode ({exc}); regenerate the jury package.") from exc
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    rgb = Image.frombytes("RGB", rgb.size, rgb.tobytes())  # a fresh image: Pillow re-saves info["comment"] etc.
    buf = io.BytesIO()
    if fmt == "JPEG":
        rgb.save(buf, format="JPEG", quality=95, subsampling=0)
        return buf.getvalue(), "image/jpeg"
    rgb.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def filler(key: bytes, n: int) -> bytes:
    """n pseudo-random bytes from SHAKE-256(key), top bit cleared: never 0xFF, so no JPEG marker can appear."""
    return bytes(b & 0x7F for b in hashlib.shake_256(key).digest(n))


def blind_screen(served: Mapping[str, bytes], secret: bytes, juror: str) -> dict[str, bytes]:
    """The bytes one juror receives for the candidates (id -> served bytes) of one image: all of one length.

    length = max(len(served)) + PAD_MIN; candidate c gets length - len(served[c]) bytes of
    `filler(HMAC-SHA256(secret, juror | c))` after its end marker. Deterministic in (secret, juror, c), so a
    reload or a restarted server sends the same bytes (the secret lives in the vote store).
    """
    if not served:
        return {}
    length = max(len(b) for b in served.values()) + PAD_MIN
    out = {}
    for cid, data in served.items():
        key = hmac.new(secret, f"{juror}|{cid}".encode("utf-8"), hashlib.sha256).digest()
        out[cid] = data + filler(key, length - len(data))
    return out
