"""Per-image 8-bit processing of a float batch, for methods that work on the image file's pixels (Pillow JPEG,
Pillow enhancement, a JPEG the attack wrote), with the kit's one uint8 <-> float conversion (`evaluator.common.imageio`:
to_uint8 = round(255 x) half to even, to_tensor = k / 255)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from evaluator.common.imageio import to_tensor, to_uint8


def from_uint8_images(images: Sequence[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """(H,W,3) uint8 images -> (N,3,H,W) k / 255 on like's device and dtype, in channels-last memory layout (that of
    a permuted (N,H,W,3) array, the layout these batches always had: a model's convolution sums in layout order, so
    another layout moves the logged raw scores in the 7th digit)."""
    batch = torch.cat([to_tensor(im) for im in images]).contiguous(memory_format=torch.channels_last)
    return batch.to(like.device, like.dtype)


def map_uint8(x: torch.Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """(N,3,H,W) float [0,1] -> fn on each (H,W,3) uint8 image (to_uint8) -> `from_uint8_images`."""
    return from_uint8_images([fn(to_uint8(xi)) for xi in x], x)
