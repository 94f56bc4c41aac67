"""An independent reader of the PNGs the jury serves (`jury_app.web.served_image.stored_png`), for the blinding tests.

`png_parts(data)` splits a served PNG into what may differ between runs and what must not: the pixels, the key
chunk, and the skeleton (every other byte, with the two checksums of the pixels left out). It parses the file
itself, checks every CRC and the Adler-32, and checks that zlib's own decoder reads the same rows.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngParts:
    width: int
    height: int
    rgb: bytes  # the pixels, row by row
    key: bytes  # the data of the private `juRy` chunk
    skeleton: bytes  # everything else: signature, chunk lengths and types, IHDR, zlib and block headers, filters


def png_parts(data: bytes) -> PngParts:
    assert data[:8] == SIGNATURE, "not a PNG"
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        payload = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), f"bad CRC in {kind!r}"
        chunks.append((kind, payload))
        pos += 12 + length
    assert pos == len(data), "bytes after the last chunk"
    kinds = [k for k, _ in chunks]
    assert kinds == [b"IHDR", b"juRy", b"IDAT", b"IEND"], kinds
    ihdr, key, idat, iend = (p for _, p in chunks)
    width, height, depth, colour, method, filtering, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert (depth, colour, method, filtering, interlace) == (8, 2, 0, 0, 0) and iend == b""
    # the zlib stream: header, stored deflate blocks (BTYPE 00, byte aligned), Adler-32
    skeleton = [SIGNATURE] + [struct.pack(">I4s", len(p), k) for k, p in chunks] + [ihdr, idat[:2]]
    raw, i, final = [], 2, False
    while not final:
        head = idat[i]
        assert head in (0, 1), f"not a stored block at byte {i}: {head:#x}"
        n, n_complement = struct.unpack("<HH", idat[i + 1:i + 5])
        assert n ^ 0xFFFF == n_complement
        skeleton.append(idat[i:i + 5])
        raw.append(idat[i + 5:i + 5 + n])
        i, final = i + 5 + n, head == 1
    assert i + 4 == len(idat), "bytes after the last block"
    rows = b"".join(raw)
    assert struct.unpack(">I", idat[i:])[0] == zlib.adler32(rows) and zlib.decompress(idat) == rows
    stride = 1 + 3 * width
    assert len(rows) == height * stride
    skeleton.append(rows[::stride])  # the filter bytes
    rgb = b"".join(rows[r * stride + 1:(r + 1) * stride] for r in range(height))
    return PngParts(width, height, rgb, key, b"".join(skeleton))
