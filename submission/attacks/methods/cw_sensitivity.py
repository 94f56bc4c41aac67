"""Shen et al. (NUS, Pixel Privacy 2020): Carlini-Wagner with the L2 term weighted per pixel by a sensitivity map.

    minimize_w   alpha * D(delta) + L_C(x + delta),     x + delta = (tanh(w) + 1) / 2   (CW change of variable)
    D(delta)   = mean over pixels and channels of (beta * 255 delta)^2     (their eq. 3, ||beta . I_s||_2^2,
                 here as a mean in 8-bit units so alpha does not depend on the image size)
    L_C        = the objective's loss on the raw score; the default 'below' is CW's hinge
                 relu(raw - (target - margin)), zero once the score is `margin` under the target (the regressor
                 analogue of their logit loss); 'toward' |raw - target|, 'lower' the raw score itself

beta in [0, 1] is large where a change is easily seen. Their map is a VGG-16 FCN trained on EMOd, not available;
the default here is a documented perceptual masking map (texture masking, as in JND models, e.g. Yang et al. 2005):

    beta = c / (c + sigma_Y),  sigma_Y the local standard deviation of the luma (7x7 Gaussian window, sigma 7/6)

so flat regions get beta ~ 1 and textured regions beta -> 0 (c = `mask_c`, [0, 1] units). `map=PATH` replaces it:
a grayscale PNG (values / 255) or a .npy float array in [0, 1] of the image's height and width; a folder holds
one `<id>.png` or `<id>.npy` per image. Adam (lr `lr`) for `iters` steps; the result is the iterate with the
smallest D among those that meet the objective's goal (`Objective.reached`; 'lower' has none), else the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evaluator.biqa.base import BIQAModel
from evaluator.biqa.natural_scene import gaussian_kernel1d, local_mean_and_deviation
from submission.attacks.framework.driver import AttackContext, GradientAttack
from submission.attacks.framework.params import AttackError, GradientParams, param


@dataclass(frozen=True)
class CWSensitivityParams(GradientParams):
    margin: float = param(5.0, "hinge margin: success once raw <= target - margin ('toward': within margin)",
                          min=0.0, max=100.0)
    alpha: float = param(10.0, "weight of the sensitivity-weighted distortion (NUS's qualifying run: 10)",
                         min=0.0, max=1e6)
    lr: float = param(0.01, "Adam learning rate on w", min=0.0, max=10.0)
    iters: int = param(100, "Adam steps", min=1, max=100000)
    mask_c: float = param(0.02, "masking constant c of beta = c / (c + sigma_Y), [0, 1] units", min=1e-6, max=1.0)
    map: Path | None = param(None, "sensitivity map file (PNG/.npy, [0, 1]) or folder of <id>.png/.npy; "
                             "none = the texture-masking map", type=Path)


def masking_map(x: torch.Tensor, c: float) -> torch.Tensor:
    """(N,3,H,W) -> (N,1,H,W) beta = c / (c + sigma_Y), sigma_Y the 7x7 Gaussian local deviation of the luma."""
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    kernel = gaussian_kernel1d(7, 7 / 6, dtype=x.dtype, device=x.device)
    _, sigma = local_mean_and_deviation(y, kernel, padding="replicate")
    return (c / (c + sigma)).unsqueeze(1)


def load_map(path: Path, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """A (H, W) float map in [0, 1] from a PNG / .npy file or a folder of `<id>.png` / `<id>.npy`."""
    if path.is_dir():
        found = [path / f"{image_id}{s}" for s in (".npy", ".png") if (path / f"{image_id}{s}").exists()]
        if not found:
            raise AttackError(f"cw-sensitivity: map folder {path} has no {image_id}.png or {image_id}.npy; "
                              f"add one per image or use map=none")
        path = found[0]
    if not path.exists():
        raise AttackError(f"cw-sensitivity: map file {path} does not exist; give a PNG/.npy file or a folder")
    try:
        if path.suffix.lower() == ".npy":
            m = np.load(path, allow_pickle=False).astype(np.float64)
        else:
            with Image.open(path) as im:
                m = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    except (OSError, ValueError) as exc:
        raise AttackError(f"cw-sensitivity: map {path} cannot be read ({exc}); write a grayscale PNG or .npy") from exc
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != shape or not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise AttackError(f"cw-sensitivity: map {path} must be an (H, W) = {shape} array of values in [0, 1], "
                          f"got shape {m.shape}")
    return m


class CWSensitivity(GradientAttack):
    name = "cw-sensitivity"
    paper = "Shen et al. (NUS) at Pixel Privacy 2020: CW with a human-aware sensitivity map"
    summary = "Carlini-Wagner (tanh, Adam) with the L2 term weighted per pixel by a sensitivity map"
    Params = CWSensitivityParams

    def sensitivity(self, x: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        p = self.params
        if p.map is None:
            return masking_map(x, p.mask_c)
        h, w = x.shape[-2:]
        maps = [load_map(Path(p.map), i, (h, w)) for i in ctx.ids]
        return torch.from_numpy(np.stack(maps)).to(x).unsqueeze(1)

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext):
        p = self.params
        beta = self.sensitivity(x, ctx)
        eps = 1e-6
        w = torch.atanh((x * 2 - 1).clamp(-1 + eps, 1 - eps)).detach().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=p.lr)
        best = x.clone()
        best_d = torch.full((x.shape[0],), float("inf"), device=x.device)
        for _ in range(p.iters):
            x_adv = (torch.tanh(w) + 1) / 2
            raw = self.raw(model, x_adv, ctx)
            d = ((beta * (x_adv - x) * 255).pow(2)).flatten(1).mean(1)
            loss = (p.alpha * d + ctx.objective.loss(raw)).sum()
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                better = ctx.objective.reached(raw.detach()) & (d < best_d)
                best = torch.where(better.view(-1, 1, 1, 1), x_adv.detach(), best)
                best_d = torch.where(better, d.detach(), best_d)
            opt.step()
        with torch.no_grad():
            last = (torch.tanh(w) + 1) / 2
            found = torch.isfinite(best_d)
            out = torch.where(found.view(-1, 1, 1, 1), best, last)
        info = [{"succeeded": bool(f), "weighted_mse": float(b) if bool(f) else None} for f, b in zip(found, best_d)]
        return out, info
