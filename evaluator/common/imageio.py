"""Safe image I/O: strict loading of submitted PNG/JPEG files, lossless atomic PNG saving, tensor conversion.

Policy (what `load_rgb` accepts; everything else raises a subclass of `ImageError` naming the file, what is
wrong and what to do):

- Formats: PNG and JPEG only, recognised by their content (signature bytes), never by the name. GIF, BMP, WebP,
  TIFF, ... raise `UnsupportedFormatError`; anything unrecognised raises `NotAnImageError`.
- The extension must match the content: `.png` for PNG, `.jpg`/`.jpeg` (any case) for JPEG
  (`ExtensionMismatchError`), since the run contract names files `<id>.png` or `<id>.jpg`.
- Pixels: 8 bits per sample, 3 channels, RGB. Refused: 16-bit PNG (`HighBitDepthError`), palette
  (`PaletteImageError`), any alpha channel or PNG `tRNS` transparency (`AlphaChannelError`, checked before
  grayscale, so LA is an alpha error), grayscale L/1/I/F (`GrayscaleImageError`), CMYK or YCCK JPEG
  (`CMYKImageError`), other modes (`UnsupportedModeError`).
- EXIF orientation: a tag 0x0112 other than 1 is refused (`OrientationError`): viewers would show the pixels
  rotated, while the evaluator and the BIQA see them unrotated.
- Size: an empty file or zero width/height raises `EmptyImageError`; more than `max_pixels` pixels raises
  `ImageTooLargeError` from the header, before any pixel is decoded (a decompression bomb never allocates),
  as does a file over 8 bytes per allowed pixel + 16 MiB. Pillow's own `DecompressionBombError` (and its
  warning, when raised as an error) maps to the same exception. No warnings filter is touched (process-global).
- Integrity: PNG chunks are walked and every CRC checked, and IEND must be present; the pixels are decoded
  fully inside a try, with Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES` left False (a RuntimeError is raised if
  someone switched it on), so truncated or corrupt data raises `CorruptImageError`.

`save_png` writes 8-bit RGB PNG losslessly with no metadata chunks (IHDR, IDAT, IEND only), atomically
(temporary file in the same folder, then `os.replace`). `to_tensor`/`to_uint8` convert between (H,W,3) uint8
and (1,3,H,W) float32 in [0,1]; `to_uint8` rounds half to even and clips, so `to_uint8(to_tensor(x)) == x`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from evaluator.common.errors import IntakeError
from evaluator.common.atomic import atomic_open

DEFAULT_MAX_PIXELS = 40_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
EXTENSIONS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg")}
EXIF_ORIENTATION = 0x0112
_FIX = "save it as 8-bit RGB PNG (e.g. `evaluator.common.imageio.save_png`)"

# Signatures of image formats we recognise but do not accept (for a precise message).
_OTHER_FORMATS = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"), (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"), (b"qoif", "QOI"),
)


class ImageError(IntakeError, ValueError):
    """An image file the kit refuses; `.path` is the file, the message says what is wrong and what to do."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str = _FIX) -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{self.path}: {problem}; {fix}")

    def __reduce__(self):  # picklable across processes (a worker pool reports errors back)
        return (type(self), (self.path, self.problem, self.fix))


class ImageNotFoundError(ImageError):
    """The path does not exist or is not a regular file."""


class EmptyImageError(ImageError):
    """The file has zero bytes, or the image has zero width or height."""


class NotAnImageError(ImageError):
    """The content is not a recognised image."""


class UnsupportedFormatError(NotAnImageError):
    """A recognised image format other than PNG or JPEG (GIF, BMP, WebP, TIFF, ...)."""


class ExtensionMismatchError(ImageError):
    """The file name's extension does not match its content (e.g. a PNG named .jpg)."""


class CorruptImageError(ImageError):
    """Truncated or corrupt data: bad CRC, missing end chunk, or the decoder failed."""


class ImageTooLargeError(ImageError):
    """More pixels than allowed; refused from the header, before decoding."""


class HighBitDepthError(ImageError):
    """More than 8 bits per sample (16-bit PNG)."""


class PaletteImageError(ImageError):
    """A palette (indexed colour) image."""


class AlphaChannelError(ImageError):
    """An alpha channel (RGBA, LA, PA) or PNG tRNS transparency."""


class GrayscaleImageError(ImageError):
    """A single-channel image (modes L, 1, I, F, I;16)."""


class CMYKImageError(ImageError):
    """A CMYK or YCCK JPEG."""


class UnsupportedModeError(ImageError):
    """Any other pixel layout that is not 8-bit RGB."""


class OrientationError(ImageError):
    """An EXIF orientation tag other than 1: the pixels would be displayed rotated or mirrored."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, read without decoding pixels. `mode` is Pillow's mode; `bit_depth` per sample."""

    format: str
    width: int
    height: int
    mode: str
    bit_depth: int = 8


@dataclass(frozen=True)
class _PngInfo:
    width: int
    height: int
    bit_depth: int
    color_type: int
    has_trns: bool


def _sniff(path: Path, head: bytes) -> str:
    """'PNG' or 'JPEG' from the signature bytes, else raise NotAnImageError / UnsupportedFormatError."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(JPEG_SIGNATURE):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        name = "WebP"
    else:
        name = next((n for sig, n in _OTHER_FORMATS if head.startswith(sig)), None)
    if name is not None:
        raise UnsupportedFormatError(path, f"is a {name} image; only PNG and JPEG are accepted")
    raise NotAnImageError(path, "is not a PNG or JPEG image (unrecognised content)")


def _check_extension(path: Path, fmt: str) -> None:
    allowed = EXTENSIONS[fmt]
    if path.suffix.lower() not in allowed:
        raise ExtensionMismatchError(
            path,
            f"the content is {fmt} but the name ends in '{path.suffix}'",
            f"rename it to '{path.stem}{allowed[0]}' (or re-encode it to match its name)",
        )


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise EmptyImageError(path, f"has zero size ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            path,
            f"is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
            "downscale it (submissions must have the size of the original) or raise max_pixels",
        )


def _png_header(path: Path, head: bytes) -> _PngInfo:
    """Parse the IHDR chunk (first chunk, 13 bytes) from the first 33 bytes of the file."""
    if len(head) < 33 or head[12:16] != b"IHDR" or struct.unpack(">I", head[8:12])[0] != 13:
        raise CorruptImageError(path, "PNG header (IHDR) is missing or truncated", "re-export the image")
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:
        raise CorruptImageError(path, "PNG header (IHDR) fails its CRC check", "re-export the image")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    return _PngInfo(width, height, bit_depth, color_type, has_trns=False)


def _walk_png_chunks(path: Path) -> bool:
    """Check every chunk's length and CRC (streamed) and that IEND is reached; return whether tRNS exists."""
    has_trns = False
    with open(path, "rb") as f:
        pos = f.seek(len(PNG_SIGNATURE))
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptImageError(path, "PNG is truncated (no IEND chunk)", "re-export the image")
            length, ctype = struct.unpack(">I", head[:4])[0], head[4:]
            crc, left = zlib.crc32(ctype), length
            while left:
                block = f.read(min(left, 1 << 20))
                if not block:
                    raise CorruptImageError(
                        path, f"PNG is truncated inside chunk {ctype!r} at byte {pos}", "re-export the image"
                    )
                crc, left = zlib.crc32(block, crc), left - len(block)
            stored = f.read(4)
            if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc:
                raise CorruptImageError(
                    path, f"PNG chunk {ctype!r} at byte {pos} fails its CRC check (truncated or corrupt data)",
                    "re-export the image",
                )
            has_trns |= ctype == b"tRNS"
            if ctype == b"IEND":
                return has_trns
            pos += 12 + length


def _open_pil(path: Path, fmt: str) -> Image.Image:
    """`Image.open` restricted to `fmt`; reads the header only. Pillow's bomb check maps to ImageTooLargeError."""
    try:
        # No warnings filter (they are process-global): for PNG our pixel limit ran already; a JPEG over
        # Pillow's MAX_IMAGE_PIXELS may emit its warning (or raise it, under -W error) and is refused either way.
        return Image.open(path, formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            path, f"Pillow refused it as a decompression bomb ({exc})", "downscale it"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise CorruptImageError(path, f"{fmt} header cannot be read ({exc})", "re-export the image") from exc


def _max_file_bytes(max_pixels: int) -> int:
    """8 bytes per allowed pixel plus 16 MiB: above any 8-bit RGB PNG or JPEG of that size with sane metadata."""
    return 8 * max_pixels + (16 << 20)


def _probe(path: str | os.PathLike, max_pixels: int) -> tuple[Path, ImageHeader, _PngInfo | None]:
    p = Path(path)
    if not p.is_file():
        what = "does not exist" if not p.exists() else "is not a regular file"
        raise ImageNotFoundError(p, f"{what}", "check the path")
    with open(p, "rb") as f:
        head = f.read(64)
        size = f.seek(0, os.SEEK_END)
    if not head:
        raise EmptyImageError(p, "is an empty file (0 bytes)", "write the image again")
    fmt = _sniff(p, head)
    _check_extension(p, fmt)
    max_bytes = _max_file_bytes(max_pixels)
    if size > max_bytes:
        raise ImageTooLargeError(
            p, f"is {size} bytes, more than {max_bytes} bytes allowed for {max_pixels} pixels",
            "strip metadata and re-export it at the original size",
        )
    png = None
    if fmt == "PNG":
        png = _png_header(p, head)
        _check_pixels(p, png.width, png.height, max_pixels)
    with _open_pil(p, fmt) as im:
        width, height = im.size
        mode = im.mode
    _check_pixels(p, width, height, max_pixels)
    bit_depth = png.bit_depth if png is not None else 8
    return p, ImageHeader(fmt, width, height, mode, bit_depth), png


def probe_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Read the header only: format, size, mode. Applies the format, extension and pixel-limit checks."""
    return _probe(path, max_pixels)[1]


_GRAY_MODES = {"L", "1", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


def _check_mode(path: Path, header: ImageHeader, png: _PngInfo | None, has_trns: bool) -> None:
    mode = header.mode
    if header.bit_depth > 8:
        raise HighBitDepthError(path, f"has {header.bit_depth} bits per sample (mode {mode}); only 8-bit is accepted")
    if mode in ("P", "PA") or (png is not None and png.color_type == 3):
        raise PaletteImageError(path, f"is a palette image (mode {mode}); only RGB is accepted")
    if mode in _ALPHA_MODES or has_trns:
        raise AlphaChannelError(path, f"has transparency (mode {mode}{', tRNS chunk' if has_trns else ''}); "
                                "only opaque RGB is accepted")
    if mode in _GRAY_MODES:
        raise GrayscaleImageError(path, f"is a grayscale image (mode {mode}); only RGB is accepted",
                                  "convert it to RGB and save it as 8-bit RGB PNG")
    if mode == "CMYK":
        raise CMYKImageError(path, "is a CMYK/YCCK image; only RGB is accepted", "convert it to RGB and " + _FIX)
    if mode != "RGB":
        raise UnsupportedModeError(path, f"has pixel mode {mode}; only 8-bit RGB is accepted")


def _check_orientation(path: Path, im: Image.Image) -> None:
    try:
        orientation = im.getexif().get(EXIF_ORIENTATION)
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF parser raises many kinds on malformed data
        raise CorruptImageError(path, f"EXIF metadata is malformed ({exc})", "strip the metadata") from exc
    if orientation is not None and orientation != 1:
        raise OrientationError(
            path,
            f"has EXIF orientation {orientation} (not 1): viewers would show the pixels rotated or mirrored",
            "apply the rotation to the pixels and save without EXIF (e.g. `evaluator.common.imageio.save_png`)",
        )


def load_rgb(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load a PNG or JPEG under the module's policy; return (H, W, 3) uint8 RGB."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so truncated images would load silently; "
            "set it back to False before loading submissions"
        )
    p, header, png = _probe(path, max_pixels)
    has_trns = False
    if png is not None:
        has_trns = _walk_png_chunks(p)
    _check_mode(p, header, png, has_trns)
    with _open_pil(p, header.format) as im:
        if im.size != (header.width, header.height) or im.mode != header.mode:
            raise CorruptImageError(p, "changed while being read", "retry when it is no longer written to")
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(p, f"Pillow refused it as a decompression bomb ({exc})", "downscale it") from exc
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error, MemoryError) as exc:
            raise CorruptImageError(p, f"{header.format} data is truncated or corrupt ({exc})",
                                    "re-export the image") from exc
        _check_orientation(p, im)
        rgb = np.asarray(im, dtype=np.uint8)
    if rgb.shape != (header.height, header.width, 3):
        raise CorruptImageError(p, f"decoded to shape {rgb.shape}, expected {(header.height, header.width, 3)}",
                                "re-export the image")
    return np.ascontiguousarray(rgb)


def _check_rgb(rgb: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {getattr(rgb, 'shape', '')}".strip()
        raise ValueError(f"{what}: expected a numpy (H, W, 3) uint8 RGB array, got {desc}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{what}: image has zero size {rgb.shape}")
    return np.ascontiguousarray(rgb)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB as a lossless PNG with no metadata chunks, atomically."""
    p = Path(path)
    rgb = _check_rgb(rgb, f"save_png({p})")
    if p.suffix.lower() != ".png":
        raise ValueError(f"{p}: save_png writes PNG; give the file a .png name")
    with atomic_open(p, "wb") as f:
        Image.fromarray(rgb, mode="RGB").save(f, format="PNG", compress_level=6)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1], x / 255."""
    rgb = _check_rgb(rgb, "to_tensor")
    # torch.tensor copies (read-only arrays, e.g. from np.asarray(PIL image), cannot be shared with torch)
    return torch.tensor(rgb, dtype=torch.uint8).permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)


def to_batch(rgbs: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """N same-size (H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1] on `device`, x / 255: `to_tensor` for a
    batch (the uint8 batch is moved first, so a GPU receives a quarter of the bytes)."""
    batch = torch.from_numpy(np.stack([_check_rgb(rgb, "to_batch") for rgb in rgbs]))  # (N, H, W, 3) uint8
    return batch.to(device).permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8: round(255 x) half to even, clipped."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"to_uint8: expected a torch.Tensor, got {type(tensor).__name__}")
    x = tensor.detach()
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"to_uint8: expected shape (3, H, W) or (1, 3, H, W), got {tuple(tensor.shape)}")
    x = x.to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("to_uint8: tensor contains NaN or infinite values")
    x = torch.round(x * 255.0).clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())
