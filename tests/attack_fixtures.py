"""A tiny differentiable BIQA, small real crops and the task rules, shared by the attack tests (fast: one 3x3
convolution)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.codec import OrganizerCodec

#: the task's rules every `Attack.run` takes explicitly (those of the kit's task.toml: threshold 50, JPEG quality
#: 90, 4:2:0, libjpeg-turbo 2.1.0), as pp-attack passes `task.biqa.threshold` and `OrganizerCodec.from_task(task)`
RULES = {"threshold": 50.0, "codec": OrganizerCodec()}


class TinyBIQA(BIQAModel):
    """raw = 100 * mean |tanh(8 conv(x))|, 8 fixed random 3x3 filters with zero mean per input channel: flat regions
    score 0, textured ones up to 100 (crops of real photos: about 15..70), so an attack lowers it by smoothing."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(8, 3, 3, 3, generator=g)
        self.register_buffer("weight", w - w.mean(dim=(2, 3), keepdim=True))
        self.info = BIQAInfo(name="tiny", weights_sha256="tiny-seed-%d" % seed)

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        return 100.0 * torch.tanh(8.0 * F.conv2d(x, self.weight, padding=1)).abs().mean(dim=(1, 2, 3))


def crops(size: int = 64) -> torch.Tensor:
    """(3, 3, size, size) float batch in [0, 1] on the 8-bit grid (size <= 192): a cat's fur, the astronaut's suit
    and a nearly flat sky over a rocket (the tiny model scores the sky far lower than the two others)."""
    from skimage import data

    pieces = [data.chelsea()[:size, 96 : 96 + size], data.astronaut()[288 : 288 + size, 96 : 96 + size],
              data.rocket()[:size, 96 : 96 + size]]
    return torch.stack([torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1) for p in pieces]).float() / 255
