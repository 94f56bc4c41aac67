"""The images the BIQA parity tests score: 512x384 crops of the photos shipped in scikit-image and scikit-learn,
clean and in three distortions (Gaussian blur, Gaussian noise, JPEG-20), and the kit's float batch of them."""

from __future__ import annotations

import functools
import io

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageFilter
from sklearn.datasets import load_sample_image


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """RGB uint8 (384, 512, 3) crop of a shipped photo: a skimage.data name, `motorcycle_left`, `china`, `flower`."""
    if name == "motorcycle_left":
        rgb = skimage.data.stereo_motorcycle()[0]
    elif name in ("china", "flower"):
        rgb = load_sample_image(f"{name}.jpg")
    else:
        rgb = getattr(skimage.data, name)()
    return np.ascontiguousarray(rgb[:384, :512, :3])


def blurred(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(2)))


def noisy(rgb: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, 15.0, rgb.shape)
    return np.clip(np.rint(rgb + noise), 0, 255).astype(np.uint8)


def jpeg20(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=20)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


VERSIONS = {"clean": lambda rgb: rgb, "blur": blurred, "noise": noisy, "jpeg20": jpeg20}


def to_tensor(*rgbs: np.ndarray) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] of RGB uint8 images."""
    return torch.stack([torch.from_numpy(np.array(r, copy=True)).permute(2, 0, 1) for r in rgbs]).float() / 255
