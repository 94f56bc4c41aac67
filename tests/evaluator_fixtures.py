"""Helpers for the evaluator tests: tiny real PNG originals, run folders, and a counting BIQA model.

`BrightnessBIQA` scores an image as 100 * its mean intensity (differentiable, deterministic): bright originals
are "high quality", darkened submissions "low quality", which makes the expected numbers easy to derive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.common.imageio import save_png

H, W = 24, 32


class BrightnessBIQA(BIQAModel):
    """raw score = 100 * scale * mean(x); counts forward calls and images seen."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.info = BIQAInfo(name="brightness")
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.calls = 0
        self.images_seen = 0

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self.calls += 1
        self.images_seen += x.shape[0]
        return 100.0 * self.scale * x.mean(dim=(1, 2, 3))


def photo(seed: int, level: float, h: int = H, w: int = W) -> np.ndarray:
    """A smooth, textured RGB image with mean intensity about `level` (0..1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.25 * np.sin(xx / (3.0 + seed % 3)) * np.cos(yy / 4.0)
    img = base[..., None] + rng.normal(0, 0.04, (h, w, 3))
    img = img - img.mean() + level
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def write_originals(folder: Path, levels: dict[str, float]) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for i, (image, level) in enumerate(sorted(levels.items())):
        images[image] = photo(i, level)
        save_png(folder / f"{image}.png", images[image])
    return images


def run_json(run: str) -> dict:
    return {"team": "testteam", "run": run, "method": "darken", "params": {"factor": 0.5}, "biqa": "brisque",
            "created": "2026-01-31T12:00:00Z", "kit_version": "0.1.0", "seed": 0}


def write_run(runs_dir: Path, run: str, images: dict[str, np.ndarray], *, fmt: str = "png") -> Path:
    """A valid run folder: every image as <id>.png (or .jpg at quality 95 with Pillow), and run.json."""
    from PIL import Image

    folder = runs_dir / run
    folder.mkdir(parents=True)
    for image, rgb in images.items():
        if fmt == "png":
            save_png(folder / f"{image}.png", rgb)
        else:
            Image.fromarray(rgb).save(folder / f"{image}.jpg", format="JPEG", quality=95)
    (folder / "run.json").write_text(json.dumps(run_json(run)), encoding="utf-8")
    return folder


def darken(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(np.round(rgb.astype(np.float64) * factor), 0, 255).astype(np.uint8)


#: Characters that show nothing (or a blank) after a visible name: a combining grapheme joiner, Hangul fillers,
#: a variation selector, a Mongolian free variation selector, the blank braille pattern, ZWJ, a soft hyphen, a
#: word joiner, a tag character, a no-break space.
INVISIBLE_CHARS = ("\u034f", "\u3164", "\u115f", "\ufe0f", "\u180b", "\u2800", "\u200d", "\u00ad", "\u2060",
                   "\U000e0041", "\uffa0", "\u1160", "\u17b4", "\u00a0")
