"""A differentiable approximation of the organizer's JPEG compress-and-decode (baseline JPEG, JFIF YCbCr).

Pipeline, on a [0, 1] RGB batch scaled to 0..255 (ITU-T T.81 with the JFIF colour transform):
  1. RGB -> YCbCr (JFIF: Y = .299 R + .587 G + .114 B, Cb/Cr offset by 128), edge-replicated to a multiple of the MCU;
  2. 4:2:0: chroma averaged over 2x2 (4:2:2: over 1x2 horizontally; 4:4:4: untouched);
  3. per 8x8 block, level shift -128 and orthonormal 2-D DCT-II: F = C (B - 128) C^T;
  4. quantize with the organizer codec's own tables Q (`codec_tables`, read back from libjpeg):
     F_q = round_approx(F / Q) * Q, where round_approx is a straight-through rounding (forward exact `round`,
     gradient 1) or the cubic approximation of Shin & Song (2017), round(x) + (x - round(x))^3, whose gradient
     3 (x - round(x))^2 is zero at integers;
  5. inverse DCT, +128, chroma upsampled (bilinear with half-pixel centres, close to libjpeg's "fancy" upsampling),
     YCbCr -> RGB, clamped to 0..255, back to [0, 1].
The forward pass matches the real codec to within integer-rounding noise of libjpeg (see tests/test_diff_jpeg.py);
attacks use `DiffJPEG.from_codec(codec)` with the task's codec (`OrganizerCodec.from_task(task)`: its quality,
subsampling and libjpeg tables) to optimize a perturbation that survives the organizer's JPEG.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluator.codec import CodecError, OrganizerCodec, block_grid


def codec_tables(quality: int, subsampling: str = "4:2:0", libjpeg: str = "turbo210") -> np.ndarray:
    """(2, 8, 8) float32 [luma, chroma] quantization tables: exactly those the organizer codec writes at `quality`
    (`evaluator.codec.OrganizerCodec.quant_tables`, read back from libjpeg), so DiffJPEG and the codec share one
    source (libjpeg scales the Annex K tables with integer arithmetic: s = 5000 // q below 50, 200 - 2q above)."""
    try:
        codec = OrganizerCodec(quality=quality, subsampling=subsampling, libjpeg=libjpeg)
    except CodecError as exc:
        raise ValueError(f"DiffJPEG: {exc}") from exc
    return codec.quant_tables().astype(np.float32)


def dct_matrix(n: int = 8) -> torch.Tensor:
    """Orthonormal DCT-II matrix C: C[k, i] = a_k cos((2i + 1) k pi / 2n), a_0 = sqrt(1/n), a_k = sqrt(2/n)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos((2 * i + 1) * k * math.pi / (2 * n)) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c.float()


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Straight-through rounding: exact round forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def round_cubic(x: torch.Tensor) -> torch.Tensor:
    """Shin & Song (2017) differentiable rounding: round(x) + (x - round(x))^3."""
    r = torch.round(x)
    return r + (x - r) ** 3


_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])
_SUBSAMPLING = {"4:4:4": (1, 1), "4:2:2": (1, 2), "4:2:0": (2, 2)}  # (vertical, horizontal) chroma factors


def _to_blocks(plane: torch.Tensor) -> torch.Tensor:
    """(N, H, W), H and W multiples of 8 -> (N, H/8, W/8, 8, 8) blocks (jpeglib's layout)."""
    n, h, w = plane.shape
    return plane.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """(N, hb, wb, 8, 8) -> (N, 8 hb, 8 wb)."""
    n, hb, wb = blocks.shape[:3]
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, hb * 8, wb * 8)


def jpeg_forward(x: torch.Tensor, tables: torch.Tensor, subsampling: str = "4:2:0") -> list[torch.Tensor]:
    """RGB [0,1] (N,3,H,W) -> [Y, Cb, Cr] unrounded DCT coefficients in quantization-step units (F / Q),
    each (N, hb, wb, 8, 8) on libjpeg's block grid (edges replicated to the MCU, as libjpeg does)."""
    n, _, h, w = x.shape
    fv, fh = _SUBSAMPLING[subsampling]
    ph, pw = (-h) % (8 * fv), (-w) % (8 * fh)
    rgb = x * 255.0
    if ph or pw:
        rgb = F.pad(rgb, (0, pw, 0, ph), mode="replicate")
    ycc = torch.einsum("ij,njhw->nihw", _RGB2YCC.to(x), rgb)
    chroma = ycc[:, 1:] + 128.0
    if fv > 1 or fh > 1:
        chroma = F.avg_pool2d(chroma, kernel_size=(fv, fh))
    c = dct_matrix().to(x)
    (lh, lw), (ch, cw) = block_grid(h, w, subsampling)
    out = []
    for plane, table, (bh, bw) in ((ycc[:, 0], tables[0], (lh, lw)), (chroma[:, 0], tables[1], (ch, cw)),
                                   (chroma[:, 1], tables[1], (ch, cw))):
        blocks = _to_blocks(plane)[:, :bh, :bw]
        out.append((c @ (blocks - 128.0) @ c.T) / table)
    return out


def jpeg_inverse(coefs: list[torch.Tensor], tables: torch.Tensor, size: tuple[int, int],
                 subsampling: str = "4:2:0") -> torch.Tensor:
    """[Y, Cb, Cr] coefficients in quantization-step units -> RGB [0,1] (N,3,H,W): dequantize, IDCT, +128,
    chroma upsampled bilinearly (half-pixel centres, like libjpeg's fancy upsampling), YCbCr -> RGB, clamp."""
    h, w = size
    c = dct_matrix().to(coefs[0])
    planes = [_from_blocks(c.T @ (k * t) @ c + 128.0) for k, t in zip(coefs, (tables[0], tables[1], tables[1]))]
    y = planes[0][:, :h, :w]
    chroma = torch.stack(planes[1:], dim=1)
    chroma = F.interpolate(chroma, scale_factor=_SUBSAMPLING[subsampling], mode="bilinear", align_corners=False) \
        if subsampling != "4:4:4" else chroma
    ycc = torch.cat([y[:, None], chroma[:, :, :h, :w] - 128.0], dim=1)
    return (torch.einsum("ij,njhw->nihw", _YCC2RGB.to(y), ycc).clamp(0.0, 255.0) / 255.0)


class DiffJPEG(nn.Module):
    """Differentiable JPEG compress + decode of RGB [0,1] batches (N, 3, H, W): jpeg_inverse(round(jpeg_forward(x)))."""

    def __init__(self, quality: int = 90, subsampling: str = "4:2:0", rounding: str = "ste",
                 tables: np.ndarray | None = None, libjpeg: str = "turbo210") -> None:
        super().__init__()
        if subsampling not in _SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {', '.join(_SUBSAMPLING)}, got {subsampling!r}")
        if rounding not in ("ste", "cubic"):
            raise ValueError(f"rounding must be 'ste' or 'cubic', got {rounding!r}")
        q = codec_tables(quality, subsampling, libjpeg) if tables is None else np.asarray(tables, dtype=np.float32)
        if q.shape != (2, 8, 8):
            raise ValueError(f"quantization tables must have shape (2, 8, 8), got {q.shape}")
        self.quality, self.subsampling, self.rounding, self.libjpeg = quality, subsampling, rounding, libjpeg
        self.register_buffer("tables", torch.from_numpy(q.copy()))

    @classmethod
    def from_codec(cls, codec: OrganizerCodec, rounding: str = "ste") -> DiffJPEG:
        """The approximation of `codec` (the task's `OrganizerCodec.from_task(task)`): its quality, subsampling
        and the tables its libjpeg build writes."""
        if not isinstance(codec, OrganizerCodec):
            raise ValueError(f"DiffJPEG.from_codec: expected an evaluator.codec.OrganizerCodec, got "
                             f"{type(codec).__name__}; pass OrganizerCodec.from_task(task)")
        return cls(quality=codec.quality, subsampling=codec.subsampling, rounding=rounding, libjpeg=codec.libjpeg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rnd = round_ste if self.rounding == "ste" else round_cubic
        coefs = [rnd(k) for k in jpeg_forward(x, self.tables, self.subsampling)]
        return jpeg_inverse(coefs, self.tables, (x.shape[2], x.shape[3]), self.subsampling)
