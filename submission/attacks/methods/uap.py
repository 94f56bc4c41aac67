"""Universal adversarial perturbations (UAP), as the MSU metrics-robustness benchmark trains and applies them.

One perturbation delta (3 x H_t x W_t, ||delta||_inf <= eps) is trained on a folder of images to LOWER the raw
BIQA score, saved to a file and reused; an image is attacked by x_adv = clip_[0,1](x + a * tile(delta)), with
the amplitude a in {0.2, 0.4, 0.8} in the MSU runs (their results average the three). Training (loss = mean raw
score of clip(x + delta), i.e. the target metric with the sign that lowers quality):

- uap-cumulative (Moosavi-Dezfooli et al. 2017's accumulation, in MSU's one-step form): delta accumulates the batch
  average of per-image one-step perturbations, g_i = grad_delta raw(clip(x_i + delta)) of image i alone:
  `update=sign` (default): delta <- Clip_eps(delta - step * mean_i sign(g_i)), each image's own signed step (FGSM
  steps); this is the kit's variant. `update=gradient`: delta <- Clip_eps(delta - step * mean_i g_i), unsigned:
  the MSU text's "averaging non-universal perturbation[s] ... generated using one step of gradient descent", and
  what MSU's cumulative-uap/train.py does (it subtracts the gradient of the batch-mean loss, which is mean_i g_i).
  Under `gradient`, `step` multiplies a raw-score gradient (score points per [0, 1] pixel unit), so its useful
  scale depends on the BIQA; under `sign` it is in [0, 1] pixel units. Neither takes the sign of the batch mean.
- uap-optimized (Zhang et al. 2021): delta is a trainable tensor, Adam on L, projected to the eps ball.
- uap-generative (Poursaeed et al. 2018): a small U-Net G maps fixed uniform noise z ~ U(-1, 1) to
  delta = eps * tanh(G(z)); Adam on G's weights; the saved delta is G(z) with the final weights in the mode every
  training step used (BatchNorm with the statistics of its input, always the same z): exactly the perturbation
  the optimization evaluated, not the output of a network switched to running averages (`eval()`).

The training images default to the run's originals (`prepare`); `train_dir` trains on another folder (MSU used
COCO / VOC). With `uap_file` set, an existing file is loaded (and checked against the method and model), a
missing one is written after training, so the same perturbation serves many runs. The file is a
`torch.save` dict loaded with `weights_only=True`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evaluator.biqa.base import BIQAModel
from evaluator.common.imageio import load_rgb, to_tensor
from submission.attacks.framework.budget import Budget, Linf
from evaluator.common.device import model_device
from submission.attacks.framework.driver import Attack, AttackContext
from submission.attacks.framework.params import AttackError, Params, param
from evaluator.common.atomic import atomic_open

log = logging.getLogger(__name__)

MSU_UAP = "MSU metrics robustness benchmark (Antsiferova et al.), UAP attacks"


@dataclass(frozen=True)
class UAPParams(Params):
    amplitude: float = param(0.4, "a in x + a * delta (MSU: 0.2, 0.4, 0.8)", min=0.0, max=10.0)
    eps: float = param(0.1, "Linf bound of the trained delta, [0, 1] units", min=0.0, max=1.0)
    epochs: int = param(5, "training passes over the training images", min=1, max=10000)
    batch: int = param(4, "training batch size", min=1, max=1024)
    height: int = param(384, "training resolution (rows); delta is tiled/cropped to each image", min=16, max=4096)
    width: int = param(512, "training resolution (columns)", min=16, max=4096)
    uap_file: Path | None = param(None, "load delta from this file, or train and save it there", type=Path)
    train_dir: Path | None = param(None, "train on the images of this folder instead of the originals", type=Path)


@dataclass(frozen=True)
class CumulativeUAPParams(UAPParams):
    step: float = param(0.005, "step of each accumulated update: [0, 1] units (update=sign), or the factor on the "
                        "raw-score gradient (update=gradient)", min=0.0, max=1.0)
    update: str = param("sign", "sign: delta -= step * mean_i sign(g_i) (the kit's); gradient: delta -= step * "
                        "mean_i g_i, unsigned (the MSU text and code)", choices=("sign", "gradient"))


@dataclass(frozen=True)
class AdamUAPParams(UAPParams):
    lr: float = param(0.01, "Adam learning rate", min=0.0, max=10.0)


def _training_batches(paths: Sequence[Path], size: tuple[int, int], batch: int, device: torch.device):
    """Images resized (bilinear, antialiased) to the training size, in batches; loaded once."""
    images = []
    for p in paths:
        x = to_tensor(load_rgb(p))
        images.append(F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False))
    data = torch.cat(images).to(device)
    return [data[i : i + batch] for i in range(0, data.shape[0], batch)]


def fit_to(delta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """delta (3, h, w) tiled periodically and cropped to `size`: keeps its spatial frequencies (resizing would
    low-pass a pattern that the BIQA reads through high-frequency statistics)."""
    h, w = size
    reps = (1, -(-h // delta.shape[1]), -(-w // delta.shape[2]))
    return delta.repeat(*reps)[:, :h, :w]


class UniversalAttack(Attack):
    """Base of the UAP methods: `train(batches, model) -> delta`; `prepare` trains or loads; `perturb` applies."""

    Params = UAPParams

    def __init__(self, params: Any | None = None, /, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        self.delta: torch.Tensor | None = None

    def train(self, batches: list[torch.Tensor], model: BIQAModel) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _loss(self, model: BIQAModel, xb: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return model.raw_score((xb + delta).clamp(0.0, 1.0)).mean()

    def prepare(self, originals: Sequence[Path], model: BIQAModel) -> None:
        p = self.params
        if p.uap_file is not None and Path(p.uap_file).is_file():
            self.delta = self.load(Path(p.uap_file), model)
            return
        folder = p.train_dir
        if folder is not None:
            if not Path(folder).is_dir():
                raise AttackError(f"{self.name}: train_dir {folder} is not a folder; pass a folder of PNG/JPEG images")
            paths = sorted(q for q in Path(folder).iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
        else:
            paths = sorted(originals)
        if not paths:
            raise AttackError(f"{self.name}: no training images (train_dir={folder}); pass a folder with images")
        device = model_device(model)
        batches = _training_batches(paths, (p.height, p.width), p.batch, device)
        log.info("%s: training on %d images for %d epochs", self.name, len(paths), p.epochs)
        self.delta = self.train(batches, model).detach().clamp(-p.eps, p.eps)
        if p.uap_file is not None:
            self.save(Path(p.uap_file), model)

    def save(self, path: Path, model: BIQAModel) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"uap": self.delta.cpu(), "method": self.name, "eps": self.params.eps,
                   "model": model.info.name, "weights": model.info.weights_identity()}
        with atomic_open(path, "wb") as f:
            torch.save(payload, f)

    def load(self, path: Path, model: BIQAModel) -> torch.Tensor:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise AttackError(f"{path}: not a UAP file this kit wrote ({exc}); delete it to retrain") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("uap"), torch.Tensor):
            raise AttackError(f"{path}: not a UAP file (no 'uap' tensor); delete it to retrain")
        delta = payload["uap"]
        if delta.ndim != 3 or delta.shape[0] != 3:
            raise AttackError(f"{path}: UAP has shape {tuple(delta.shape)}, expected (3, H, W); delete it to retrain")
        if payload.get("method") != self.name or payload.get("model") != model.info.name:
            raise AttackError(
                f"{path}: UAP was trained by {payload.get('method')} on {payload.get('model')}, not by {self.name} "
                f"on {model.info.name}; use another uap_file"
            )
        if payload.get("weights", "") != model.info.weights_identity():
            raise AttackError(
                f"{path}: UAP was trained on {model.info.name} weights {payload.get('weights', '')!r}, not on the "
                f"weights given now ({model.info.weights_identity()!r}); use another uap_file, or delete it to retrain"
            )
        return delta.float()

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> torch.Tensor:
        if self.delta is None:
            raise AttackError(f"{self.name}: no perturbation: call prepare(originals, model) first (the CLI does)")
        return (x + self.params.amplitude * fit_to(self.delta.to(x), x.shape[-2:])).clamp(0.0, 1.0)

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        """||a * delta||_inf <= a * eps."""
        return Budget(Linf(), torch.full((x.shape[0],), self.params.amplitude * self.params.eps))


class CumulativeUAP(UniversalAttack):
    name = "uap-cumulative"
    paper = MSU_UAP + "; Moosavi-Dezfooli et al. 2017"
    summary = "universal perturbation: accumulated averages of per-image one-step (signed or unsigned) gradient steps"
    Params = CumulativeUAPParams

    def train(self, batches: list[torch.Tensor], model: BIQAModel) -> torch.Tensor:
        """delta <- Clip_eps(delta - step * mean_i u(g_i)), g_i = grad raw(clip(x_i + delta)) of image i alone,
        u = sign (update=sign) or the identity (update=gradient)."""
        p = self.params
        delta = torch.zeros_like(batches[0][0])
        for _ in range(p.epochs):
            for xb in batches:
                d = delta.detach().expand_as(xb).clone().requires_grad_(True)  # one copy per image: own gradient
                (grad,) = torch.autograd.grad(model.raw_score((xb + d).clamp(0.0, 1.0)).sum(), d)
                move = grad.sign() if p.update == "sign" else grad
                delta = (delta - p.step * move.mean(dim=0)).clamp(-p.eps, p.eps)
        return delta


class OptimizedUAP(UniversalAttack):
    name = "uap-optimized"
    paper = MSU_UAP + "; Zhang et al. 2021"
    summary = "universal perturbation trained directly with Adam, projected to the eps ball"
    Params = AdamUAPParams

    def train(self, batches: list[torch.Tensor], model: BIQAModel) -> torch.Tensor:
        p = self.params
        delta = torch.zeros_like(batches[0][0]).requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=p.lr)
        for _ in range(p.epochs):
            for xb in batches:
                opt.zero_grad()
                self._loss(model, xb, delta).backward()
                opt.step()
                with torch.no_grad():
                    delta.clamp_(-p.eps, p.eps)
        return delta.detach()


class _UNet(nn.Module):
    """A small U-Net: two stride-2 encoder stages, two decoder stages with skip connections."""

    def __init__(self, ch: int = 16) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.e1, self.e2, self.e3 = block(3, ch), block(ch, 2 * ch), block(2 * ch, 4 * ch)
        self.d2, self.d1 = block(6 * ch, 2 * ch), block(3 * ch, ch)
        self.out = nn.Conv2d(ch, 3, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        e1 = self.e1(z)
        e2 = self.e2(F.avg_pool2d(e1, 2))
        e3 = self.e3(F.avg_pool2d(e2, 2))
        d2 = self.d2(torch.cat([F.interpolate(e3, size=e2.shape[-2:]), e2], 1))
        d1 = self.d1(torch.cat([F.interpolate(d2, size=e1.shape[-2:]), e1], 1))
        return self.out(d1)


class GenerativeUAP(UniversalAttack):
    name = "uap-generative"
    paper = MSU_UAP + "; Poursaeed et al. 2018"
    summary = "universal perturbation generated by a U-Net from fixed uniform noise, trained with Adam"
    Params = AdamUAPParams

    def train(self, batches: list[torch.Tensor], model: BIQAModel) -> torch.Tensor:
        """Adam on G's weights; returns eps * tanh(G(z)) with the final weights, BatchNorm in the training mode
        (statistics of its input z) every step used, so the saved delta is the one the loss was computed on."""
        p = self.params
        gen = torch.Generator().manual_seed(0)
        shape = batches[0][0].shape
        z = (torch.rand((1, *shape), generator=gen) * 2 - 1).to(batches[0])
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global stream
            torch.manual_seed(0)
            net = _UNet().to(batches[0].device)
        opt = torch.optim.Adam(net.parameters(), lr=p.lr)
        net.train()
        for _ in range(p.epochs):
            for xb in batches:
                opt.zero_grad()
                delta = self.generate(net, z)
                self._loss(model, xb, delta).backward()
                opt.step()
        with torch.no_grad():
            return self.generate(net, z)

    def generate(self, net: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """delta = eps * tanh(G(z)), G in training mode (the only mode it is optimized in)."""
        if not net.training:
            raise AttackError(f"{self.name}: the generator must stay in training mode (BatchNorm batch statistics)")
        return self.params.eps * torch.tanh(net(z))[0]
