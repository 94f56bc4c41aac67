"""Organizer-side pre-processing ("defenses"): deterministic functions of an RGB uint8 (H, W, 3) image.

The task's adversary model says protected images "will be subject to some minimal pre-processing intended to
counter adversarial examples"; 2020 used JPEG-90 only. This catalogue names the alternatives so that they can be
compared (which camouflage survives which pre-processing). Each entry maps RGB uint8 (H, W, 3) to RGB uint8, is
deterministic (none of them is random; a random one would carry its seed among its parameters, so that the name
fixes the output), and keeps the size unless its entry says otherwise (`Defense.output_size`):

- `none`: identity (a copy);
- `jpeg95`, `jpeg90`, `jpeg75`, `jpeg50`: the organizer codec (`evaluator/codec.py`) at quality Q,
  `decompress(compress(x))`, the exact path of the scoring pipeline; `jpeg90` is the official 2020 one;
- `webp80`: lossy WebP at quality 80 (Pillow / libwebp, default method 4), decoded;
- `resize50`, `resize75`: bicubic down to round(s H) x round(s W) (s = 0.5, 0.75, at least 1 pixel), then
  bicubic back up to H x W; Pillow's resize antialiases when reducing (the kernel is widened by 1/s);
- `blur0.5`, `blur1`: Gaussian blur of each channel, sigma 0.5 / 1 pixel (scipy.ndimage.gaussian_filter,
  'reflect' borders, kernel truncated at 4 sigma), rounded to uint8;
- `median3`: 3x3 median of each channel (scipy.ndimage.median_filter, 'reflect' borders);
- `bits5`: bit-depth reduction to 5 bits (Xu et al. 2018, "Feature squeezing"):
  x' = round(round(x (2^5 - 1) / 255) 255 / (2^5 - 1)), i.e. 32 levels from 0 to 255;
- `social`: a "social network" upload: bicubic (antialiased) downscale so that the long side is 384 when it is
  longer (short side round(384 short / long), at least 1), then the organizer codec at quality 85. The output
  keeps the downscaled size (`output_size`); an image whose long side is at most 384 is only compressed.

The JPEG entries (and `social`) use the codec passed as `codec` (libjpeg build and subsampling; the quality is the
entry's own), by default `OrganizerCodec()`, the 2020 task's turbo210 4:2:0; pass `OrganizerCodec.from_task(task)`
to follow a task file. Chains ("resize75+jpeg90", applied left to right) are parsed by `parse_chain`; besides the
catalogue names a chain (and `--defenses`) may name `jpeg<Q>` for any quality Q in 1..100 (the same organizer-codec
round trip). task.toml's `preprocess.chain` names the official pre-processing this way (default 'jpeg90', validated
by `evaluator.config`); `official_codec(task)` is what the scoring pipeline compresses with: the plain task codec
for a JPEG-only chain, else `PreprocessedCodec` (the chain's steps, then the task's JPEG).

Unknown names raise `DefenseError` (a `ValueError`) listing the known ones, with a did-you-mean suggestion.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import scipy.ndimage
from PIL import Image

from evaluator.common.errors import EXIT_USAGE, KitError
from evaluator.common.text import did_you_mean
from evaluator.codec import OrganizerCodec

SOCIAL_LONG_SIDE = 384
SOCIAL_QUALITY = 85
CHAIN_SEPARATOR = "+"


class DefenseError(KitError, ValueError):
    """An unknown defense name, a malformed chain, or an image a defense cannot take (the message says which)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, eq=False)
class Defense:
    """One catalogue entry: `fn(rgb, codec)` with its name, its parameters and a one-line summary.

    `long_side` is None for defenses that keep the size; `social` sets it (see `output_size`). Entries compare
    and hash by identity (they are the catalogue's singletons)."""

    name: str
    summary: str
    fn: Callable[[np.ndarray, OrganizerCodec], np.ndarray] = field(repr=False)
    params: Mapping[str, Any] = field(default_factory=dict)
    long_side: int | None = None  # the output's long side is at most this (None: size kept)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the output for an (height, width) input."""
        if self.long_side is None:
            return height, width
        return _fit_long_side(height, width, self.long_side)

    def __reduce__(self) -> tuple[Callable[[str], Defense | None], tuple[str]]:
        """Pickled by name (its `fn` is a closure): the scoring pipeline's worker processes receive the official
        chain this way, and get the same catalogue entry back (`lookup`)."""
        if lookup(self.name) is not self:
            raise TypeError(f"defense {self.name!r} is not a catalogue entry and cannot be sent to another process")
        return lookup, (self.name,)

    def __call__(self, rgb: np.ndarray, codec: OrganizerCodec | None = None) -> np.ndarray:
        """The defended image: RGB uint8 (H', W', 3), a new C-contiguous array (the input is not modified)."""
        rgb = check_rgb(rgb, self.name)
        out = self.fn(rgb, OrganizerCodec() if codec is None else codec)
        expected = (*self.output_size(*rgb.shape[:2]), 3)
        if out.dtype != np.uint8 or out.shape != expected:  # pragma: no cover - a catalogue bug, not user input
            raise AssertionError(f"defense {self.name}: returned {out.dtype} {out.shape}, expected uint8 {expected}")
        if not (out.flags.writeable and out.flags.c_contiguous) or np.shares_memory(out, rgb):
            out = np.array(out, order="C")
        return out


def check_rgb(rgb: object, what: str) -> np.ndarray:
    """`rgb` as a C-contiguous (H, W, 3) uint8 array, or `DefenseError` naming the defense and the fix."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {getattr(rgb, 'shape', '')}".strip()
        raise DefenseError(
            f"defense {what}: expected a numpy (H, W, 3) uint8 RGB array, got {desc}; load images with "
            "evaluator.common.imageio.load_rgb or convert tensors with evaluator.common.imageio.to_uint8"
        )
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DefenseError(f"defense {what}: the image has zero size {rgb.shape}; pass a non-empty image")
    return np.ascontiguousarray(rgb)


# ------------------------------------------------------------------------------------------------ operations
def _fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) scaled so that max(H, W) == long_side when it is larger (short side rounded, at least 1)."""
    longest = max(height, width)
    if longest <= long_side:
        return height, width
    short = lambda n: max(1, int(round(n * long_side / longest)))  # noqa: E731
    return (long_side, short(width)) if height >= width else (short(height), long_side)


def _identity(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
    return rgb.copy()


def _jpeg(quality: int) -> Callable[[np.ndarray, OrganizerCodec], np.ndarray]:
    def run(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
        c = codec if codec.quality == quality else dataclasses.replace(codec, quality=quality)
        return c.decompress(c.compress(rgb))  # the scoring pipeline's own two calls

    return run


def _webp(quality: int) -> Callable[[np.ndarray, OrganizerCodec], np.ndarray]:
    def run(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="WEBP", quality=quality, lossless=False)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    return run


def _pil_resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow BICUBIC resize (antialiased when reducing: the kernel support grows with the reduction factor)."""
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)


def _resize_round_trip(scale: float) -> Callable[[np.ndarray, OrganizerCodec], np.ndarray]:
    def run(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
        h, w = rgb.shape[:2]
        small = _pil_resize(rgb, max(1, int(round(h * scale))), max(1, int(round(w * scale))))
        return _pil_resize(small, h, w)

    return run


def _gaussian_blur(sigma: float) -> Callable[[np.ndarray, OrganizerCodec], np.ndarray]:
    def run(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
        blurred = scipy.ndimage.gaussian_filter(rgb.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect",
                                                truncate=4.0)
        return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)

    return run


def _med3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Elementwise median of three arrays."""
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def median3x3(rgb: np.ndarray) -> np.ndarray:
    """scipy.ndimage.median_filter(rgb, size=(3, 3, 1), mode="reflect"), exactly, about 15x faster: each 3x3
    window's three columns sorted (min, median, max), then median = med3(max of the minima, med3 of the medians,
    min of the maxima), the exact median of 9 values (tested against scipy on random and tiny images)."""
    p = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="symmetric")  # scipy's 'reflect' is numpy's 'symmetric'
    a, b, c = p[:-2], p[1:-1], p[2:]  # the three rows of every window, per column
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    mn, mx, md = np.minimum(lo, c), np.maximum(hi, c), np.maximum(lo, np.minimum(hi, c))
    w = rgb.shape[1]
    low = np.maximum(np.maximum(mn[:, :w], mn[:, 1:w + 1]), mn[:, 2:])
    mid = _med3(md[:, :w], md[:, 1:w + 1], md[:, 2:])
    high = np.minimum(np.minimum(mx[:, :w], mx[:, 1:w + 1]), mx[:, 2:])
    return _med3(low, mid, high)


def _median(size: int) -> Callable[[np.ndarray, OrganizerCodec], np.ndarray]:
    def run(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
        if size == 3:
            return median3x3(rgb)
        return scipy.ndimage.median_filter(rgb, size=(size, size, 1), mode="reflect")

    return run


def _bit_depth(bits: int) -> Callable[[np.ndarray, OrganizerCodec], np.ndarray]:
    top = (1 << bits) - 1

    def run(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
        # no ties: 2 x 31 v = 255 (2k + 1) and 2 x 255 k = 31 (2j + 1) have no integer solutions (even vs odd)
        level = np.rint(rgb.astype(np.float64) * top / 255.0)
        return np.rint(level * 255.0 / top).astype(np.uint8)

    return run


def _social(rgb: np.ndarray, codec: OrganizerCodec) -> np.ndarray:
    h, w = _fit_long_side(*rgb.shape[:2], SOCIAL_LONG_SIDE)
    small = rgb if (h, w) == rgb.shape[:2] else _pil_resize(rgb, h, w)
    return _jpeg(SOCIAL_QUALITY)(small, codec)


def _entries() -> list[Defense]:
    jpeg = "the organizer codec (its libjpeg build and subsampling) at quality {q}, decoded"
    resize = "bicubic down to {p}% of each side (antialiased, Pillow) and back up to the original size"
    blur = "Gaussian blur of each channel, sigma {s} pixel (scipy.ndimage, reflect borders)"
    return [
        Defense("none", "identity: the image as submitted", _identity),
        Defense("jpeg95", jpeg.format(q=95), _jpeg(95), {"quality": 95}),
        Defense("jpeg90", jpeg.format(q=90) + " (the official 2020 pre-processing)", _jpeg(90), {"quality": 90}),
        Defense("jpeg75", jpeg.format(q=75), _jpeg(75), {"quality": 75}),
        Defense("jpeg50", jpeg.format(q=50), _jpeg(50), {"quality": 50}),
        Defense("webp80", "lossy WebP at quality 80 (Pillow / libwebp), decoded", _webp(80), {"quality": 80}),
        Defense("resize50", resize.format(p=50), _resize_round_trip(0.5), {"scale": 0.5}),
        Defense("resize75", resize.format(p=75), _resize_round_trip(0.75), {"scale": 0.75}),
        Defense("blur0.5", blur.format(s=0.5), _gaussian_blur(0.5), {"sigma": 0.5}),
        Defense("blur1", blur.format(s=1), _gaussian_blur(1.0), {"sigma": 1.0}),
        Defense("median3", "3x3 median of each channel (scipy.ndimage, reflect borders)", _median(3), {"size": 3}),
        Defense("bits5", "bit-depth reduction to 5 bits per channel (32 levels, feature squeezing)", _bit_depth(5),
                {"bits": 5}),
        Defense(
            "social",
            f"downscale so the long side is {SOCIAL_LONG_SIDE} if longer (bicubic, antialiased; the output keeps "
            f"that size), then the organizer codec at quality {SOCIAL_QUALITY}",
            _social,
            {"long_side": SOCIAL_LONG_SIDE, "quality": SOCIAL_QUALITY},
            long_side=SOCIAL_LONG_SIDE,
        ),
    ]


#: The catalogue, in the order the issue and the result tables list it (read-only).
DEFENSES: Mapping[str, Defense] = MappingProxyType({d.name: d for d in _entries()})
OFFICIAL = "jpeg90"


def names() -> list[str]:
    """Catalogue names, in catalogue order."""
    return list(DEFENSES)


JPEG_NAME = re.compile(r"jpeg([1-9][0-9]?|100)")


@functools.lru_cache(maxsize=None)
def _jpeg_entry(quality: int) -> Defense:
    """`jpeg<Q>` outside the catalogue: the organizer codec at quality Q (one entry per Q, made on first use)."""
    return Defense(f"jpeg{quality}", f"the organizer codec (its libjpeg build and subsampling) at quality {quality}, "
                   "decoded", _jpeg(quality), {"quality": quality})


def lookup(name: str) -> Defense | None:
    """The catalogue entry `name`, a `jpeg<Q>` entry (Q in 1..100), or None."""
    if name in DEFENSES:
        return DEFENSES[name]
    m = JPEG_NAME.fullmatch(name)
    return _jpeg_entry(int(m.group(1))) if m else None


def _unknown(name: object, where: str) -> DefenseError:
    known = ", ".join(DEFENSES)
    hint = did_you_mean(name.strip().lower(), DEFENSES) if isinstance(name, str) else ""
    return DefenseError(f"{where}unknown defense {name!r}{hint}; known defenses: {known} (and jpeg<Q> for any JPEG "
                        "quality Q in 1..100)")


def get(name: str) -> Defense:
    """The catalogue entry `name`, or `DefenseError` listing the known names (with a did-you-mean)."""
    if not isinstance(name, str) or name not in DEFENSES:
        raise _unknown(name, "")
    return DEFENSES[name]


@dataclass(frozen=True, eq=False)
class Chain:
    """Defenses applied left to right; `name` is the canonical spelling ('resize75+jpeg90')."""

    defenses: tuple[Defense, ...]

    @property
    def name(self) -> str:
        return CHAIN_SEPARATOR.join(d.name for d in self.defenses)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        for d in self.defenses:
            height, width = d.output_size(height, width)
        return height, width

    def __call__(self, rgb: np.ndarray, codec: OrganizerCodec | None = None) -> np.ndarray:
        out = check_rgb(rgb, self.name)
        for d in self.defenses:
            out = d(out, codec)
        return out


def parse_chain(text: object, where: str = "defense chain") -> Chain:
    """'resize75+jpeg90' -> Chain; spaces around names are ignored. `where` prefixes errors (e.g. a file and key).

    Refused: a non-string, an empty chain or an empty part ('jpeg90+'), an unknown name (listed, with a
    did-you-mean), and 'none' combined with other defenses (it is the identity: write the chain without it)."""
    if not isinstance(text, str):
        raise DefenseError(f"{where}: must be a string like 'resize75+jpeg90', got {type(text).__name__} {text!r}")
    parts = [p.strip() for p in text.split(CHAIN_SEPARATOR)]
    if not text.strip():
        raise DefenseError(f"{where}: is empty; name a defense ('none' for no pre-processing) or a chain like "
                           f"'resize75+jpeg90' (known defenses: {', '.join(DEFENSES)})")
    if any(not p for p in parts):
        raise DefenseError(
            f"{where}: {text!r} has an empty part; write defense names joined by '{CHAIN_SEPARATOR}', e.g. "
            f"'resize75+jpeg90' (known defenses: {', '.join(DEFENSES)})"
        )
    for p in parts:
        if lookup(p) is None:
            raise _unknown(p, f"{where}: {text!r}: ")
    if "none" in parts and len(parts) > 1:
        raise DefenseError(f"{where}: {text!r} combines 'none' with other defenses; 'none' is the identity, drop it")
    return Chain(tuple(lookup(p) for p in parts))


def apply(name: str, rgb: np.ndarray, codec: OrganizerCodec | None = None) -> np.ndarray:
    """Apply the defense or chain `name` ('jpeg90', 'resize75+jpeg90') to RGB uint8 (H, W, 3)."""
    return parse_chain(name, "defense")(rgb, codec)


@dataclass(frozen=True, eq=False)
class PreprocessedCodec:
    """The official pre-processing of a task whose `preprocess.chain` has steps before its JPEG: `compress(rgb)` =
    the task codec's `compress(steps(rgb))`, `decompress` the codec's; `quality`, `subsampling`, `libjpeg` and
    `chain` say what it does (task.json records them)."""

    steps: Chain
    codec: OrganizerCodec

    @property
    def chain(self) -> str:
        return f"{self.steps.name}{CHAIN_SEPARATOR}jpeg{self.codec.quality}"

    quality = property(lambda self: self.codec.quality)
    subsampling = property(lambda self: self.codec.subsampling)
    libjpeg = property(lambda self: self.codec.libjpeg)

    def compress(self, rgb: np.ndarray) -> bytes:
        return self.codec.compress(self.steps(rgb, self.codec))

    def decompress(self, data: bytes) -> np.ndarray:
        return self.codec.decompress(data)

    def roundtrip_bytes(self, rgb: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(compress(rgb), decompress(compress(rgb))): the task codec's `roundtrip_bytes` of `steps(rgb)`."""
        return self.codec.roundtrip_bytes(self.steps(rgb, self.codec))


def official_chain(task: Any) -> Chain:
    """The task's official pre-processing, `preprocess.chain` of its task.toml (validated by `evaluator.config`)."""
    return parse_chain(task.preprocess.chain, f"{task.source}: key 'preprocess.chain'")


def official_codec(task: Any) -> OrganizerCodec | PreprocessedCodec:
    """What the scoring pipeline compresses every submitted image with: `OrganizerCodec.from_task(task)` when the
    official chain is the task's JPEG alone (2020: 'jpeg90'), else `PreprocessedCodec` (the steps, then that JPEG)."""
    codec = OrganizerCodec.from_task(task)
    chain = official_chain(task)
    last = chain.defenses[-1].name
    if last != f"jpeg{codec.quality}":
        raise DefenseError(f"{task.source}: key 'preprocess.chain' = {task.preprocess.chain!r} must end with "
                           f"'jpeg{codec.quality}' (jpeg.quality); load the task with evaluator.config.load_task")
    if len(chain.defenses) == 1:
        return codec
    return PreprocessedCodec(Chain(chain.defenses[:-1]), codec)


__all__ = [
    "PreprocessedCodec",
    "lookup",
    "official_chain",
    "official_codec",
    "CHAIN_SEPARATOR",
    "DEFENSES",
    "OFFICIAL",
    "SOCIAL_LONG_SIDE",
    "SOCIAL_QUALITY",
    "Chain",
    "Defense",
    "DefenseError",
    "apply",
    "check_rgb",
    "get",
    "names",
    "parse_chain",
]
