"""The driver every attack of the kit runs through: `Attack` (settings, hooks, `run`), `GradientAttack`, the
`AttackContext` a run hands to the method and the `AttackResult` it returns. Settings live in `params.py`, the
objective in `objective.py`, distortion measures and bounds in `budget.py`, the binary search over a budget in
`search.py`.

An attack is a small class with a frozen `Params` dataclass (every setting has a default, a type, a help text and
optional bounds) and one method, `perturb`. `Attack.run(x, model)` takes RGB float `(N, 3, H, W)` in [0, 1] and a
`BIQAModel`, and returns an `AttackResult`: the adversarial batch (float, [0, 1]), the raw BIQA scores before and
after, and per-image details. Attacks that write a file themselves (the DCT-domain attack writes JPEG coefficients)
set `writes_jpeg = True` and also return the encoded JPEG bytes per image; `x_adv` is then their decoded pixels.

Gradient attacks optimize `model.raw_score` (never the clipped `forward`, whose gradient is zero outside [0, 100])
through a pluggable `Objective`:

- `lower`:  L = raw                                  (MSU benchmark: push the score down, no target)
- `below`:  L = relu(raw - (target - margin))        (stop pushing once the score is `margin` under the target)
- `toward`: L = |raw - target|                       (HCMUS: aim at a target score)

and a pluggable `Distortion` (the norm that bounds or measures the perturbation: Linf, L2, MSE). With
`through_jpeg=True` the model scores `DiffJPEG.from_codec(codec)(x)`, a differentiable approximation of the
organizer's JPEG (`submission/diff_jpeg.py`) with the task's quality, subsampling and libjpeg tables, so the
perturbation is optimized to survive the compression the evaluator applies.

The task's rules reach an attack only through `run`: `threshold` (`task.biqa.threshold`, the target of every
attack whose target is None) and `codec` (`OrganizerCodec.from_task(task)`, the JPEG the evaluator applies) are
required arguments; `perturb` and `budget` see them in the `AttackContext` (the threshold as the resolved
`objective`, the codec as `codec`); no attack keeps a copy of either.

Adding an attack::

    @dataclass(frozen=True)
    class MyParams(GradientParams):
        eps: float = param(4 / 255, "Linf bound in [0, 1] units", min=0.0, max=1.0)

    class MyAttack(GradientAttack):
        name = "my-attack"
        paper = "Author et al. 2024, eq. 3"
        summary = "one line for --list"
        Params = MyParams

        def perturb(self, x, model, ctx):
            ...  # return x_adv (N,3,H,W) in [0,1]; use self.loss_and_grad(model, x_adv, ctx)

        def budget(self, x, info, ctx):  # optional: the bound the output keeps (Linf, L2 or MSE)
            return Budget(Linf(), torch.full((x.shape[0],), self.params.eps))

in a new module of `submission/attacks/methods/` (discovered automatically: nothing to register), and run it with
the task's rules: `MyAttack().run(x, model, threshold=task.biqa.threshold, codec=OrganizerCodec.from_task(task))`.
`run` resolves the target (None = the threshold), rounds the output to 8 bits inside the budget and scores it;
tests/test_attack_contract.py checks every registered attack against this contract (8-bit output, budget, every
setting effective, seeded, objective 'below' stops at the goal, logged scores = scores of the written files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from evaluator.biqa.base import BIQAModel
from evaluator.codec import OrganizerCodec
from evaluator.common.device import model_device
from submission.attacks.framework.budget import Budget, to_8bit
from submission.attacks.framework.objective import Objective
from submission.attacks.framework.params import (
    AttackError,
    ParamError,
    Params,
    ParamSpec,
    GradientParams,
    show_value,
    param_specs,
    params_to_dict,
)


@dataclass(frozen=True)
class AttackContext:
    """What one `run` call knows besides the pixels: the objective resolved against the task's threshold, the
    task's codec (the JPEG the evaluator applies), per-image seeds (derived from the run seed and the image ids,
    so results do not depend on batching or sharding), image ids."""

    objective: Objective
    codec: OrganizerCodec
    seeds: tuple[int, ...]
    ids: tuple[str, ...]

    def generator(self, i: int, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(self.seeds[i])
        return g

    def rand_like(self, x: torch.Tensor, kind: str = "normal") -> torch.Tensor:
        """Per-image reproducible noise shaped like x: standard normal or uniform [0, 1)."""
        out = []
        for i in range(x.shape[0]):
            g = self.generator(i, x.device)
            fn = torch.randn if kind == "normal" else torch.rand
            out.append(fn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype))
        return torch.stack(out)


def image_seed(run_seed: int, image_id: str) -> int:
    """A 63-bit seed for one image: sha256 of '<run_seed>:<image_id>'."""
    h = hashlib.sha256(f"{run_seed}:{image_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)


@dataclass
class AttackResult:
    """The output of `Attack.run` for a batch of N images (tensors on the CPU).

    x_adv: (N, 3, H, W) float in [0, 1] on the 8-bit grid (for JPEG-writing attacks: the decoded JPEG);
    raw_before/raw_after: (N,) raw BIQA scores of x and x_adv (image domain); info: one dict per image
    (iterations, chosen eps, ...); jpeg_bytes: None, or per image the encoded JPEG the attack wants written as
    `<id>.jpg`; seconds: wall time; budget: the bound the attack declared (None: none)."""

    x_adv: torch.Tensor
    raw_before: torch.Tensor
    raw_after: torch.Tensor
    info: list[dict[str, Any]]
    jpeg_bytes: list[bytes] | None = None
    seconds: float = 0.0
    budget: Budget | None = None


# --------------------------------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------------------------------


class Attack:
    """Base class. Subclasses set `name`, `paper`, `summary`, `Params` and implement `perturb`.

    Construct with a params object or keyword overrides of the defaults: `IFGSM(eps=4/255)`; unknown or ill-typed
    settings raise `ParamError`. `run(x, model)` scores, perturbs, re-scores and returns an `AttackResult`."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type] = Params
    #: True when the attack produces encoded JPEG files itself (then `perturb` returns (x_adv, jpeg_bytes)).
    writes_jpeg: ClassVar[bool] = False

    def __init__(self, params: Any | None = None, /, **overrides: Any) -> None:
        if params is None:
            params = self.Params()
        elif not isinstance(params, self.Params):
            raise ParamError(f"{self.name}: params must be {self.Params.__name__}, got {type(params).__name__}")
        specs = {s.name: s for s in param_specs(self.Params)}
        for key in overrides:
            if key not in specs:
                raise ParamError(
                    f"{self.name}: unknown parameter {key!r}; known: {', '.join(specs) or '(none)'}"
                )
        checked = {k: specs[k].check(v, self.name) for k, v in overrides.items()}
        params = dataclasses.replace(params, **checked)
        for s in specs.values():
            s.check(getattr(params, s.name), self.name)
        self.params = params
        self.validate()

    # ---- metadata ----
    @classmethod
    def param_specs(cls) -> list[ParamSpec]:
        return param_specs(cls.Params)

    @classmethod
    def parse_params(cls, assignments: dict[str, str]) -> dict[str, Any]:
        """Typed values from `--set key=value` strings; raises `ParamError` on an unknown key or bad value."""
        specs = {s.name: s for s in cls.param_specs()}
        out = {}
        for key, text in assignments.items():
            if key not in specs:
                raise ParamError(
                    f"{cls.name}: unknown parameter {key!r}; known: {', '.join(specs) or '(none)'} "
                    f"(see pp-attack --list)"
                )
            out[key] = specs[key].check(specs[key].parse(text, cls.name), cls.name)
        return out

    def params_dict(self) -> dict[str, Any]:
        return params_to_dict(self.params)

    def validate(self) -> None:
        """Cross-parameter checks (raise `ParamError`); per-field bounds are already checked."""

    # ---- hooks ----
    def prepare(self, originals: Sequence[Path], model: BIQAModel) -> None:
        """Called once by the CLI before any `run`, with the sorted original paths of the whole run (not only the
        shard). Universal attacks train or load their perturbation here; the default does nothing."""

    def objective(self, threshold: float) -> Objective:
        """The objective resolved against the task's BIQA threshold (target None = the threshold)."""
        p = self.params
        target = getattr(p, "target", None)
        target = float(threshold if target is None else target)
        return Objective(getattr(p, "objective", "lower"), target, float(getattr(p, "margin", 0.0)))

    def uses_target(self) -> bool:
        """Whether the target score steers this attack with its current settings (False: objective 'lower' of an
        attack that has no other use for it, or no target setting at all)."""
        names = {s.name for s in self.param_specs()}
        return "target" in names and getattr(self.params, "objective", "below") != "lower"

    def recorded_params(self, threshold: float) -> dict[str, Any]:
        """`params_dict()` with a target of None replaced by the score actually aimed at (for run.json)."""
        params = self.params_dict()
        if params.get("target", "absent") is None and self.uses_target():
            params["target"] = self.objective(threshold).target
        return params

    def budget(self, x: torch.Tensor, info: Sequence[dict[str, Any]], ctx: AttackContext) -> Budget | None:
        """The distortion bound this attack guarantees on its output for the batch `x` (after `perturb`, whose
        per-image `info` and context it may read), or None when it declares none. `run` rounds to 8 bits inside
        it."""
        return None

    def perturb(self, x: torch.Tensor, model: BIQAModel, ctx: AttackContext) -> Any:  # pragma: no cover
        """Return x_adv (N,3,H,W) in [0, 1] on x's device, or (x_adv, info list), or for `writes_jpeg` attacks
        (x_adv decoded, jpeg_bytes list[, info list])."""
        raise NotImplementedError

    # ---- the driver ----
    def run(
        self,
        x: torch.Tensor,
        model: BIQAModel,
        *,
        threshold: float,
        codec: OrganizerCodec,
        ids: Sequence[str] | None = None,
        seed: int = 0,
    ) -> AttackResult:
        """Attack a batch. `x`: (N, 3, H, W) float in [0, 1] (any device; moved to the model's). The task's rules
        are required, never defaulted: `threshold` = `task.biqa.threshold`, the target of every attack whose
        target is None; `codec` = `OrganizerCodec.from_task(task)`, the JPEG the evaluator applies (what
        `through_jpeg` approximates and what pgd-dct writes for). `ids` name the images (default '0', '1', ...)
        and with `seed` give each image its own reproducible random stream.

        The returned `x_adv` is 8-bit: round(255 x_adv) / 255, kept inside the attack's declared `budget` (a
        Linf bound is applied on the 8-bit grid), so `raw_after` is the score of the file the run will hold."""
        BIQAModel.check_input(x)
        t0 = time.perf_counter()
        device = model_device(model)
        x = x.detach().to(device=device, dtype=torch.float32)
        n = x.shape[0]
        ids = tuple(str(i) for i in (ids if ids is not None else range(n)))
        if len(ids) != n:
            raise AttackError(f"{self.name}: {len(ids)} ids for a batch of {n} images")
        threshold = _check_threshold(threshold, self.name)
        if not isinstance(codec, OrganizerCodec):
            raise AttackError(
                f"{self.name}: codec must be an evaluator.codec.OrganizerCodec, got {type(codec).__name__}; pass "
                "codec=OrganizerCodec.from_task(task), the task's [jpeg] rules"
            )
        ctx = AttackContext(
            objective=self.objective(threshold),
            codec=codec,
            seeds=tuple(image_seed(seed, i) for i in ids),
            ids=ids,
        )
        with torch.no_grad():
            raw_before = model.raw_score(x).detach()
        with torch.enable_grad():  # gradient attacks work even when the caller is under torch.no_grad()
            out = self.perturb(x, model, ctx)
        jpeg_bytes: list[bytes] | None = None
        info: list[dict[str, Any]] = [{} for _ in range(n)]
        if self.writes_jpeg:
            x_adv, jpeg_bytes, *rest = out
            if len(jpeg_bytes) != n:
                raise AttackError(f"{self.name}: returned {len(jpeg_bytes)} JPEGs for {n} images")
        elif isinstance(out, tuple):
            x_adv, *rest = out
        else:
            x_adv, rest = out, []
        if rest:
            info = [dict(d) for d in rest[0]]
        x_adv = x_adv.detach().clamp(0.0, 1.0)
        if x_adv.shape != x.shape:
            raise AttackError(f"{self.name}: returned shape {tuple(x_adv.shape)} for input {tuple(x.shape)}")
        budget = self.budget(x, info, ctx)
        x_adv = to_8bit(x_adv, budget, x)
        with torch.no_grad():
            raw_after = model.raw_score(x_adv).detach()
        return AttackResult(
            x_adv=x_adv.cpu(),
            raw_before=raw_before.cpu(),
            raw_after=raw_after.cpu(),
            info=info,
            jpeg_bytes=jpeg_bytes,
            seconds=time.perf_counter() - t0,
            budget=budget.cpu() if budget is not None else None,
        )


def _check_threshold(threshold: Any, method: str) -> float:
    """The task's threshold as a float strictly between 0 and 100 (as task.toml requires), or AttackError."""
    ok = isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and math.isfinite(threshold)
    if not ok or not 0.0 < float(threshold) < 100.0:
        raise AttackError(
            f"{method}: threshold={threshold!r} is not a score strictly between 0 and 100; pass "
            "threshold=task.biqa.threshold "
            "(evaluator.config.load_task(path), the task's [biqa] threshold)"
        )
    return float(threshold)


class GradientAttack(Attack):
    """Base of the attacks that follow the gradient of the objective on `model.raw_score` (optionally through
    the differentiable JPEG). `loss_and_grad` is the one place the model is called during an attack."""

    Params: ClassVar[type] = GradientParams
    #: True when target and margin steer the attack even under objective 'lower' (e.g. its own success test).
    target_without_objective: ClassVar[bool] = False

    def __init__(self, params: Any | None = None, /, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        self._jpeg: dict[tuple[OrganizerCodec, str], torch.nn.Module] = {}

    def run(self, x: torch.Tensor, model: BIQAModel, **kwargs: Any) -> AttackResult:
        """`Attack.run`, after refusing a model whose metadata says it has no gradient (`info.differentiable`)."""
        if not getattr(model.info, "differentiable", True):
            raise AttackError(
                f"{self.name}: is a gradient attack, and the BIQA model {model.info.name!r} is not differentiable; "
                "attack a differentiable model (brisque, niqe, koncept512) or use a method that does not need "
                "gradients (identity, jpeg, blur, noise, enhance)"
            )
        return super().run(x, model, **kwargs)

    def validate(self) -> None:
        """Refuse settings that would be silently ignored: target / margin under objective 'lower' (unless the
        attack uses them anyway). Subclasses call super().validate()."""
        p, default = self.params, self.Params()
        if getattr(p, "objective", None) == "lower" and not self.target_without_objective:
            for key in ("target", "margin"):
                if hasattr(p, key) and getattr(p, key) != getattr(default, key):
                    raise ParamError(
                        f"{self.name}: {key}={show_value(getattr(p, key))} has no effect with objective=lower; "
                        f"add --set objective=below (or toward), or drop {key}"
                    )

    def uses_target(self) -> bool:
        if self.target_without_objective and "target" in {s.name for s in self.param_specs()}:
            return True
        return super().uses_target()

    def scorer_input(self, x: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """What the model sees: x, or DiffJPEG.from_codec(ctx.codec)(x) when `through_jpeg` is set (the task's
        quality, subsampling and libjpeg tables)."""
        if not getattr(self.params, "through_jpeg", False):
            return x
        key = (ctx.codec, str(x.device))
        if key not in self._jpeg:
            from submission.diff_jpeg import DiffJPEG

            self._jpeg[key] = DiffJPEG.from_codec(ctx.codec).to(x.device)
        return self._jpeg[key](x)

    def raw(self, model: BIQAModel, x: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """Raw score as the attack optimizes it (through the task's DiffJPEG when asked)."""
        return model.raw_score(self.scorer_input(x, ctx))

    def loss_and_grad(
        self, model: BIQAModel, x: torch.Tensor, ctx: AttackContext
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw (N,), loss (N,), d sum(loss) / dx) at x; all detached. Images are independent, so the gradient of
        the summed loss is each image's own gradient."""
        xg = x.detach().requires_grad_(True)
        raw = self.raw(model, xg, ctx)
        loss = ctx.objective.loss(raw)
        (grad,) = torch.autograd.grad(loss.sum(), xg)
        return raw.detach(), loss.detach(), grad.detach()

