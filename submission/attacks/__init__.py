"""Attack registry: `ATTACKS` maps a method name to its class; `get_attack(name)`; `available()`.

Every module of `submission.attacks.methods` is imported once and each concrete `Attack` subclass with a `name` is
registered, so adding an attack is adding a file there (two classes with the same name are an error).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from evaluator.common.text import did_you_mean
from submission.attacks import methods

from submission.attacks.framework.budget import Distortion, L2, Linf, MSE
from submission.attacks.framework.driver import Attack, AttackContext, AttackResult, GradientAttack
from submission.attacks.framework.objective import Objective
from submission.attacks.framework.params import AttackError, GradientParams, ParamError, Params, ParamSpec, param


def _discover() -> dict[str, type[Attack]]:
    found: dict[str, type[Attack]] = {}
    for info in sorted(pkgutil.iter_modules(methods.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{methods.__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Attack) and obj.__module__ == module.__name__ and obj.name:
                if obj.name in found and found[obj.name] is not obj:
                    raise RuntimeError(
                        f"attack name {obj.name!r} defined twice: {found[obj.name].__module__} and {module.__name__}"
                    )
                found[obj.name] = obj
    return dict(sorted(found.items()))


ATTACKS: dict[str, type[Attack]] = _discover()


def available() -> list[str]:
    """Method names, sorted."""
    return list(ATTACKS)


def get_attack(name: str) -> type[Attack]:
    """The attack class registered under `name`; `AttackError` naming the closest and the known methods otherwise."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise AttackError(f"unknown attack method {name!r}{did_you_mean(name, ATTACKS)}; available: "
                          f"{', '.join(ATTACKS)} (pp-attack --list)") from None


__all__ = [
    "ATTACKS", "Attack", "AttackContext", "AttackError", "AttackResult", "Distortion", "GradientAttack",
    "GradientParams", "L2", "Linf", "MSE", "Objective", "ParamError", "ParamSpec", "Params", "available",
    "get_attack", "param",
]
