"""The one base every attack of the kit builds on: settings, objective, distortion measure, result.

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
required arguments, carried to `perturb` and `budget` in the `AttackContext`; no attack keeps a copy of either.

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

in any module of `submission/attacks/` (discovered automatically), and run it with the task's rules:
`MyAttack().run(x, model, threshold=task.biqa.threshold, codec=OrganizerCodec.from_task(task))`. `run` resolves
the target (None = the threshold), rounds the output to 8 bits inside the budget and scores it;
tests/test_attack_contract.py checks every registered attack against this contract (8-bit output, budget, every
setting effective, seeded, objective 'below' stops at the goal, logged scores = scores of the written files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from evaluator.biqa.base import BIQAModel
from evaluator.codec import OrganizerCodec


class AttackError(ValueError):
    """An attack that cannot run as asked: unknown method, bad parameter, missing file (the message says which)."""


class ParamError(AttackError):
    """A parameter that is unknown, of the wrong type or out of range: names the method, key, value and the fix."""


# --------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------

PARAM_TYPES: tuple[type, ...] = (bool, int, float, str, Path)


def param(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
    type: type | None = None,
) -> Any:
    """A dataclass field carrying the metadata `--list` shows and `--set` checks.

    `type` is only needed when the default is None (e.g. an optional file path: `type=Path`)."""
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices else None, "type": type}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamSpec:
    """One setting of an attack, as `--list` shows it and `--set key=value` parses it."""

    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False  # None is allowed (written `none` on the command line)

    def describe(self) -> str:
        kind = self.type.__name__ if self.type is not Path else "path"
        bits = [f"{kind}", f"default {_show(self.default)}"]
        if self.choices:
            bits.append("one of " + "|".join(str(c) for c in self.choices))
        if self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            bits.append(f"range [{lo}, {hi}]")
        return f"{self.name} ({', '.join(bits)}): {self.help}"

    def parse(self, text: str, method: str) -> Any:
        """Parse a command-line string into this parameter's type (floats accept fractions like `10/255`)."""
        where = f"{method}: parameter {self.name}={text!r}"
        if self.optional and text.strip().lower() in ("none", "null", ""):
            return None
        try:
            if self.type is bool:
                low = text.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if self.type is int:
                return int(text.strip())
            if self.type is float:
                t = text.strip()
                if "/" in t:
                    num, den = t.split("/", 1)
                    return float(num) / float(den)
                return float(t)
            if self.type is Path:
                return Path(text)
            return str(text)
        except (ValueError, ZeroDivisionError):
            kind = {bool: "true/false", int: "an integer", float: "a number (fractions like 10/255 work)"}
            raise ParamError(f"{where} is not {kind.get(self.type, self.type.__name__)}") from None

    def check(self, value: Any, method: str) -> Any:
        """Validate a typed value (type, bounds, choices); ints are accepted for floats. Returns the value."""
        where = f"{method}: parameter {self.name}={value!r}"
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"{where}: a value is required")
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is Path and isinstance(value, str):
            value = Path(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise ParamError(f"{where} must be {self.type.__name__}, got {type(value).__name__}")
        if self.type is float and not math.isfinite(value):
            raise ParamError(f"{where} must be a finite number")
        if self.choices and value not in self.choices:
            raise ParamError(f"{where} is not allowed; choose one of {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min:
            raise ParamError(f"{where} is below the minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise ParamError(f"{where} is above the maximum {self.max:g}")
        return value


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "none"
    return str(v)


def param_specs(params_cls: type) -> list[ParamSpec]:
    """The `ParamSpec` of every field of a params dataclass, in declaration order."""
    specs = []
    for f in dataclasses.fields(params_cls):
        meta = f.metadata
        kind = meta.get("type") or type(f.default)
        if kind not in PARAM_TYPES:
            if isinstance(f.default, Path):
                kind = Path
            else:
                raise TypeError(f"{params_cls.__name__}.{f.name}: parameter type {kind!r} not supported")
        specs.append(
            ParamSpec(
                name=f.name,
                type=kind,
                default=f.default,
                help=meta.get("help", ""),
                min=meta.get("min"),
                max=meta.get("max"),
                choices=meta.get("choices"),
                optional=f.default is None,
            )
        )
    return specs


def params_to_dict(params: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of every parameter (paths as strings), for run.json."""
    out = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out


@dataclass(frozen=True)
class Params:
    """Base of every attack's settings. Empty: naive attacks add their own fields."""


@dataclass(frozen=True)
class GradientParams(Params):
    """Settings shared by every gradient attack: the objective and the optional differentiable JPEG (whose
    quality, subsampling and tables are the task's codec, given to `run`: no setting duplicates them)."""

    objective: str = param(
        "below",
        "lower: minimize the raw score; below: relu(raw - (target - margin)); toward: |raw - target|",
        choices=("lower", "below", "toward"),
    )
    target: float | None = param(
        None, "target score s_a in [0, 100] (none = the task's threshold; --target sets it)",
        min=0.0, max=100.0, type=float,
    )
    margin: float = param(10.0, "objective 'below': aim this many points under the target", min=0.0, max=100.0)
    through_jpeg: bool = param(False, "optimize the score of DiffJPEG(x), a differentiable approximation of the "
                               "task's JPEG (its quality, subsampling and libjpeg tables)")


# --------------------------------------------------------------------------------------------------------------
# Objective and distortion
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """Per-image loss to MINIMIZE as a function of the raw BIQA score (higher raw = better quality).

    kind 'lower': L = raw; 'below': L = relu(raw - (target - margin)); 'toward': L = |raw - target|.
    `reached(raw)` says which images already meet the goal (below target - margin, or within margin of target
    for 'toward'; never for 'lower')."""

    kind: str = "below"
    target: float = 50.0
    margin: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ("lower", "below", "toward"):
            raise ParamError(f"objective {self.kind!r} unknown; use lower, below or toward")
        if not 0.0 <= self.target <= 100.0:
            raise ParamError(f"target score {self.target:g} is outside [0, 100]; pick a target in [0, 100]")

    def loss(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "lower":
            return raw
        if self.kind == "below":
            return torch.relu(raw - (self.target - self.margin))
        return (raw - self.target).abs()

    def reached(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "lower":
            return torch.zeros_like(raw, dtype=torch.bool)
        if self.kind == "below":
            return raw <= self.target - self.margin
        return (raw - self.target).abs() <= self.margin

    def success(self, score: torch.Tensor, threshold: float) -> torch.Tensor:
        """The task's criterion: clipped score below the BIQA threshold (low quality)."""
        return score < threshold


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class Distortion:
    """A norm on perturbations delta (N, 3, H, W): `measure`, the steepest-descent `direction` of a gradient
    under that norm, and `project` onto the ball of radius eps (eps a float or a per-image (N,) tensor)."""

    name: ClassVar[str] = ""

    def measure(self, delta: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def direction(self, grad: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def measure_output(self, x_adv: torch.Tensor, center: torch.Tensor, jpeg_bytes: Sequence[bytes] | None
                       ) -> torch.Tensor:
        """(N,) distortion of an attack's output from `center`: measure(x_adv - center) for the pixel norms; a
        norm of the written JPEG's coefficients (pgd-dct's `JPEGSteps`) reads `jpeg_bytes` instead."""
        return self.measure(x_adv - center)


class Linf(Distortion):
    """||delta||_inf; direction = sign(g) (FGSM); projection = clamp to [-eps, eps]."""

    name = "linf"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().amax(dim=1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        if isinstance(eps, torch.Tensor):
            e = _view(eps.to(delta), delta)
            return torch.maximum(torch.minimum(delta, e), -e)
        return delta.clamp(-eps, eps)


class L2(Distortion):
    """||delta||_2 over all pixels and channels ([0, 1] units); direction = g / ||g||; projection = rescale."""

    name = "l2"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).norm(dim=1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        n = _flat(grad).norm(dim=1).clamp_min(1e-12)
        return grad / _view(n, grad)

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        n = self.measure(delta).clamp_min(1e-12)
        e = eps.to(delta) if isinstance(eps, torch.Tensor) else torch.full_like(n, float(eps))
        return delta * _view(torch.clamp(e / n, max=1.0), delta)


class MSE(L2):
    """mean(delta^2) ([0, 1] units); same direction as L2; eps is an MSE, projected via radius sqrt(eps * D)."""

    name = "mse"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).pow(2).mean(dim=1)

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        d = _flat(delta).shape[1]
        radius = (eps * d) ** 0.5 if not isinstance(eps, torch.Tensor) else (eps * d).sqrt()
        return L2().project(delta, radius)


DISTORTIONS: dict[str, type[Distortion]] = {"linf": Linf, "l2": L2, "mse": MSE}


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [0, 1] batches: 10 log10(1 / MSE) (inf for identical images)."""
    mse = _flat((a - b).double()).pow(2).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


@dataclass(frozen=True)
class Budget:
    """A distortion bound an attack guarantees: norm.measure(x_adv - center) <= eps * (1 + rel_tol) per image.

    eps: (N,) in the norm's [0, 1] units (Linf, L2, or MSE = mean squared; for a JPEG-writing attack possibly a
    norm of its coefficients, measured on the bytes it wrote); center: the image the ball is centred on (None =
    the original x); rel_tol: the relative slack the method states (e.g. MADC's search precision)."""

    norm: Distortion
    eps: torch.Tensor
    center: torch.Tensor | None = None
    rel_tol: float = 0.0

    def cpu(self) -> Budget:
        center = None if self.center is None else self.center.detach().cpu()
        return Budget(self.norm, self.eps.detach().cpu(), center, self.rel_tol)

    def excess(self, x: torch.Tensor, x_adv: torch.Tensor, jpeg_bytes: Sequence[bytes] | None = None
               ) -> torch.Tensor:
        """(N,) measured / allowed - 1 (<= 0 when the bound holds); `jpeg_bytes`: `AttackResult.jpeg_bytes`."""
        c = x if self.center is None else self.center.to(x_adv)
        allowed = self.eps.to(x_adv) * (1.0 + self.rel_tol)
        return self.norm.measure_output(x_adv, c, jpeg_bytes).to(x_adv) / allowed.clamp_min(1e-30) - 1.0


def to_8bit(x_adv: torch.Tensor, budget: Budget | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
    """round(255 x_adv) / 255; under a Linf budget each value is then clamped to the 8-bit levels within eps of
    the centre (ceil(255 (c - eps)) .. floor(255 (c + eps))), so rounding never leaves the ball."""
    q = torch.round(x_adv * 255.0)
    if budget is not None and isinstance(budget.norm, Linf):
        c = budget.center if budget.center is not None else x
        if c is not None:
            e = _view(budget.eps.to(q), q) * 255.0
            c255 = c.to(q) * 255.0
            q = torch.minimum(torch.maximum(q, torch.ceil(c255 - e - 1e-4)), torch.floor(c255 + e + 1e-4))
    return q.clamp(0.0, 255.0) / 255.0


# --------------------------------------------------------------------------------------------------------------
# Context and result
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackContext:
    """What one `run` call knows besides the pixels: the objective resolved against the task's threshold, the
    task's codec (the JPEG the evaluator applies), per-image seeds (derived from the run seed and the image ids,
    so results do not depend on batching or sharding), image ids."""

    objective: Objective
    threshold: float
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
        device = _model_device(model)
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
            threshold=threshold,
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


def _model_device(model: torch.nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


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
                        f"{self.name}: {key}={_show(getattr(p, key))} has no effect with objective=lower; "
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
