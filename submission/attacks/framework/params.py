"""Attack settings: a frozen `Params` dataclass per attack whose fields carry a default, a type, a help text and
optional bounds (`param`), read by `--list` (`ParamSpec.describe`) and checked by `--set` (`ParamSpec.parse/check`);
`GradientParams` holds the settings every gradient attack shares. Subclasses inherit fields and re-declare one only
to change its default or help text."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from evaluator.common.errors import AttackError


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


def redefault(params_cls: type, name: str, default: Any) -> Any:
    """The field `name` of `params_cls` with another default, the same help, bounds, choices and type: how a
    subclass changes an inherited setting's default without restating it."""
    return field(default=default, metadata=dict(params_cls.__dataclass_fields__[name].metadata))


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
        bits = [f"{kind}", f"default {show_value(self.default)}"]
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


def show_value(v: Any) -> str:
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

