"""PGD in the JPEG DCT domain with Lagrangian quantization, written straight into a JPEG (Bonnet et al. 2020, sec. 3.2.2).

The JPEG is the task's (`run(..., codec=OrganizerCodec.from_task(task))`, carried in `AttackContext.codec`): its
quality gives the tables, its subsampling the chroma grid, its libjpeg build the writer and the success check; the
attack has no quality setting of its own, so it always writes for, and checks against, what the evaluator applies.

Notation (all coefficients in quantization-step units of the codec's tables Delta, on libjpeg's block grid):
z_o = DCT(x)/Delta, the unquantized coefficients of the original (`submission.diff_jpeg.jpeg_forward`);
decode(z) = the differentiable JPEG decoder (`jpeg_inverse`); L(z) = BIQA_raw(decode(z)) - s_a (their eq. 5).

1. Attack: L2 PGD on z, distortion D(z) = ||Delta (z - z_o)||_2 (0..255 units, equal to the pixel L2 distortion
   of the luma/chroma planes since the DCT is orthonormal), loss relu(L + margin); a binary search over the budget
   eps in (0, eps_max] (`search_steps` rounds, Bonnet: 7 rounds, max 2000) keeps the smallest budget that reaches
   L < 0 before rounding, giving z_a = z_o + P.
2. Quantization (their eqs. 6-7): with G = dL/dX at z_a (X = Delta z the raw coefficients), minimizing
   ||Delta (P + Q)||^2 + lambda L(Q) to first order gives X_o + P + Q* = X_o - lambda G / 2, i.e.
   z*(lambda) = z_o - lambda G / (2 Delta); the coefficients written are k = round(z*), kept within `max_step`
   quantization steps of z_o (their bound on the quantized perturbation).
3. lambda is searched (log scale, `lambda_steps` rounds) for the smallest value whose JPEG, decoded and recompressed
   by the organizer codec, scores below s_a (success after the task's JPEG, Bonnet's P_JPEG). lambda = 0 (the plain
   quantization of z_o) is tried first, so an image the organizer's JPEG already puts below s_a is written
   unperturbed; if neither lambda = 0 nor the largest lambda succeeds, the lower-scoring of the two is written.

The run gets `<id>.jpg` files holding exactly the coefficients k (no re-encoding).

Declared bound (`budget`, `JPEGSteps`): every written coefficient is within `max_step` quantization steps of the
original's unquantized one, |k - z_o| <= max_step, measured on the JPEG bytes the attack returns (a pixel-domain
bound would have to allow every coefficient to move, and be too loose to notice a broken clip).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluator.biqa.base import BIQAModel
from evaluator.codec import DCTCoefficients, OrganizerCodec
from evaluator.common.imageio import to_tensor
from submission.attacks.framework.budget import Budget, Distortion
from submission.attacks.framework.driver import Attack, AttackContext
from submission.attacks.framework.objective import Objective
from submission.attacks.framework.params import Params, param
from submission.attacks.framework.pixels import from_uint8_images
from submission.attacks.framework.search import search_budget
from submission.diff_jpeg import jpeg_forward, jpeg_inverse

BONNET = "Bonnet, Furon, Bas 2020, Fooling an Automatic Image Quality Estimator, sec. 3.2.2, eqs. 5-7"


@dataclass(frozen=True)
class PGDDCTParams(Params):
    target: float | None = param(None, "target score s_a (none = the task's threshold); Bonnet: 30 and 50",
                                 min=0.0, max=100.0, type=float)
    margin: float = param(2.0, "PGD aims this many points under s_a before quantization", min=0.0, max=100.0)
    eps_max: float = param(2000.0, "largest L2 budget in the DCT domain (0..255 units; Bonnet: 2000)", min=1.0)
    search_steps: int = param(7, "binary-search rounds over the budget (Bonnet: 7)", min=1, max=30)
    iters: int = param(10, "PGD iterations per budget (as pgd-l2)", min=1, max=10000)
    max_step: int = param(1, "largest change of a coefficient, in quantization steps", min=1, max=64)
    lambda_steps: int = param(10, "search rounds over the Lagrange multiplier lambda", min=1, max=40)


class JPEGSteps(Distortion):
    """max |k - z_o| over the three planes of a written JPEG, in quantization steps of `codec`: k its coefficients
    (read back from the bytes), z_o = jpeg_forward(center) the unquantized coefficients of the image it is
    measured from. Measured on the bytes only (`measure_output`); it has no pixel-domain measure or projection."""

    name = "jpeg-steps"

    def __init__(self, codec: OrganizerCodec) -> None:
        self.codec = codec

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("jpeg-steps is measured on the written JPEG: use Budget.excess(x, x_adv, jpeg_bytes)")

    def measure_output(self, x_adv: torch.Tensor, center: torch.Tensor, jpeg_bytes) -> torch.Tensor:
        if jpeg_bytes is None or len(jpeg_bytes) != center.shape[0]:
            raise ValueError("jpeg-steps: pass the attack's jpeg_bytes (one JPEG per image) to Budget.excess")
        tables = PGDDCT._tables(self.codec, center.device)
        with torch.no_grad():
            z_o = [c.double().cpu().numpy() for c in jpeg_forward(center, tables, self.codec.subsampling)]
        out = []
        with tempfile.TemporaryDirectory(prefix="pp-jpeg-steps-") as d:
            path = Path(d) / "k.jpg"
            for i, blob in enumerate(jpeg_bytes):
                path.write_bytes(blob)
                k = self.codec.read_dct(path)
                out.append(max(float(np.abs(kp.astype(np.float64) - zp[i]).max())
                               for kp, zp in zip((k.Y, k.Cb, k.Cr), z_o)))
        return torch.tensor(out)


def _l2(delta: list[torch.Tensor], tables: torch.Tensor) -> torch.Tensor:
    """Per-image ||Delta (z - z_o)||_2 over the three planes."""
    t = (tables[0], tables[1], tables[1])
    return torch.sqrt(sum(((d * q) ** 2).flatten(1).sum(1) for d, q in zip(delta, t)))


class PGDDCT(Attack):
    name = "pgd-dct"
    paper = BONNET
    summary = "L2 PGD on the DCT coefficients of the task's JPEG + Lagrangian quantization, written as a JPEG"
    Params = PGDDCTParams
    writes_jpeg = True

    def objective(self, threshold: float) -> Objective:
        """'below' the target s_a (None = the task's BIQA threshold), with the PGD margin: the one loss of stage 1."""
        target = self.params.target
        return Objective("below", float(threshold if target is None else target), self.params.margin)

    # ---- stage 1: PGD over the budget ----
    def _pgd(self, z_o: list[torch.Tensor], tables: torch.Tensor, size: tuple[int, int], model: BIQAModel,
             ctx: AttackContext, eps: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        p, objective, ss = self.params, ctx.objective, ctx.codec.subsampling
        z = [c.clone() for c in z_o]
        step = 2.5 * eps / p.iters
        raw = None
        for _ in range(p.iters):
            zg = [c.detach().requires_grad_(True) for c in z]
            raw = model.raw_score(jpeg_inverse(zg, tables, size, ss))
            grads = torch.autograd.grad(objective.loss(raw).sum(), zg)
            # steepest descent for ||Delta z||_2: move along G / Delta^2, normalized in the Delta-weighted norm
            t = (tables[0], tables[1], tables[1])
            direction = [g / (q**2) for g, q in zip(grads, t)]
            norm = _l2(direction, tables).clamp_min(1e-12)
            view = (-1, 1, 1, 1, 1)
            z = [c.detach() - (step / norm).view(view) * d for c, d in zip(z, direction)]
            delta = [c - o for c, o in zip(z, z_o)]
            scale = torch.clamp(eps / _l2(delta, tables).clamp_min(1e-12), max=1.0).view(view)
            z = [o + d * scale for o, d in zip(z_o, delta)]
        with torch.no_grad():
            raw = model.raw_score(jpeg_inverse(z, tables, size, ss))
        return z, raw

    # ---- stage 2: quantization with lambda search, scored after the organizer's JPEG ----
    @staticmethod
    def _write(codec: OrganizerCodec, k: list[np.ndarray], size: tuple[int, int], tmp: Path) -> bytes:
        coeffs = DCTCoefficients(Y=k[0], Cb=k[1], Cr=k[2], qt=codec.quant_tables(), height=size[0], width=size[1])
        codec.write_dct(tmp, coeffs)
        return tmp.read_bytes()

    @staticmethod
    def _tables(codec: OrganizerCodec, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(codec.quant_tables().astype(np.float32)).to(device)

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> Any:
        p, codec = self.params, ctx.codec
        n, _, h, w = x.shape
        size = (h, w)
        target = ctx.objective.target
        tables = self._tables(codec, x.device)
        with torch.no_grad():
            z_o = jpeg_forward(x, tables, codec.subsampling)

        # stage 1: per-image binary search over eps in (0, eps_max]; images that fail at eps_max keep that result
        # (`search_budget` with late_success=False)
        def attempt(eps: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
            z, raw = self._pgd(z_o, tables, size, model, ctx, eps)
            return z, raw < target

        z_a, best_eps, found = search_budget(attempt, p.eps_max, p.search_steps, n, x.device, late_success=False)

        # gradient of L at z_a, w.r.t. the raw coefficients X = Delta z
        zg = [c.detach().requires_grad_(True) for c in z_a]
        raw_a = model.raw_score(jpeg_inverse(zg, tables, size, codec.subsampling))
        grads = torch.autograd.grad(raw_a.sum(), zg)
        t = (tables[0], tables[1], tables[1])
        g_x = [g / q for g, q in zip(grads, t)]  # dL/dX = dL/dz / Delta
        shift = [(g / (2 * q)).detach().cpu().numpy() for g, q in zip(g_x, t)]  # z* = z_o - lambda * shift
        zo_np = [c.detach().cpu().numpy() for c in z_o]

        outs: list[np.ndarray] = []
        blobs: list[bytes] = []
        info: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="pp-pgd-dct-") as d:
            tmp = Path(d) / "adv.jpg"
            for i in range(n):
                unit = max(float(np.abs(s[i]).max()) for s in shift)
                lam_unit = 1.0 / max(unit, 1e-12)  # lambda at which the largest move is one quantization step

                def attempt(lam: float) -> tuple[float, bytes, np.ndarray]:
                    k = []
                    for o, s in zip(zo_np, shift):
                        zs = o[i] - lam * s[i]
                        lo_k, hi_k = np.ceil(o[i] - p.max_step), np.floor(o[i] + p.max_step)
                        k.append(np.clip(np.round(zs), lo_k, hi_k).astype(np.int16))
                    blob = self._write(codec, k, size, tmp)
                    rgb = codec.decompress(blob)
                    after = codec.roundtrip(rgb)
                    xa = to_tensor(after).to(x.device)
                    with torch.no_grad():
                        score = float(model.raw_score(xa)[0])
                    return score, blob, rgb

                lo_l, hi_l = np.log(0.25 * lam_unit), np.log(1024.0 * lam_unit)
                score, blob, rgb = attempt(0.0)  # lambda = 0: the plain quantization round(z_o)
                chosen, success = 0.0, score < target
                if not success:
                    s_hi, b_hi, r_hi = attempt(float(np.exp(hi_l)))
                    success = s_hi < target
                    if success or s_hi < score:  # none succeeds: keep the lower-scoring of the two
                        score, blob, rgb, chosen = s_hi, b_hi, r_hi, float(np.exp(hi_l))
                if success and chosen > 0:
                    for _ in range(p.lambda_steps):
                        mid = (lo_l + hi_l) / 2
                        s_mid, b_mid, r_mid = attempt(float(np.exp(mid)))
                        if s_mid < target:
                            hi_l, score, blob, rgb, chosen = mid, s_mid, b_mid, r_mid, float(np.exp(mid))
                        else:
                            lo_l = mid
                outs.append(rgb)
                blobs.append(blob)
                info.append({"eps": float(best_eps[i]), "pgd_success": bool(found[i]), "lambda": chosen,
                             "success_jpeg": bool(success), "score_jpeg_raw": score})
        x_adv = from_uint8_images(outs, x)
        return x_adv, blobs, info

    def budget(self, x: torch.Tensor, info, ctx: AttackContext) -> Budget:
        """|k - z_o| <= max_step quantization steps of the task's codec, every coefficient (`JPEGSteps`)."""
        return Budget(JPEGSteps(ctx.codec), torch.full((x.shape[0],), float(self.params.max_step)), rel_tol=1e-4)
