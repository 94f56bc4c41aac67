"""Parameter inheritance in the attack framework: `redefault` changes only an inherited setting's default, and a
method's settings are inherited, not restated (their order is what --list and run.json show)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from submission.attacks import get_attack
from submission.attacks.framework.params import GradientParams, param_specs, redefault
from submission.attacks.methods.enhance import EnhanceIFGSMParams, EnhanceParams


def test_redefault_changes_the_default_and_keeps_help_choices_and_bounds():
    @dataclass(frozen=True)
    class P(GradientParams):
        objective: str = redefault(GradientParams, "objective", "lower")
        margin: float = redefault(GradientParams, "margin", 3.0)

    base = {s.name: s for s in param_specs(GradientParams)}
    new = {s.name: s for s in param_specs(P)}
    assert new["objective"].default == "lower" and new["margin"].default == 3.0
    for name in ("objective", "margin"):
        assert dataclasses.replace(new[name], default=base[name].default) == base[name]
    assert list(new) == list(base)  # same fields, same order


def test_enhance_ifgsm_inherits_the_enhancement_factors_after_the_gradient_settings():
    names = [f.name for f in dataclasses.fields(EnhanceIFGSMParams)]
    assert issubclass(EnhanceIFGSMParams, EnhanceParams) and issubclass(EnhanceIFGSMParams, GradientParams)
    assert names == ["objective", "target", "margin", "through_jpeg", "color", "sharpness", "brightness",
                     "contrast", "eps", "step", "iters"]
    assert list(get_attack("enhance-ifgsm")().params_dict()) == names
