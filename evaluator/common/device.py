"""`--device auto`: cuda, then mps, then cpu (`resolve_device`); the device a model sits on (`model_device`)."""

from __future__ import annotations

import itertools

import torch

from evaluator.common.errors import ModelError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ModelError, ValueError):
    """A device name that is unknown or not available here (the model cannot be placed on it)."""


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of `model`'s first parameter or buffer (cpu for a model that has neither)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """Map a device name to a `torch.device`; 'auto' picks cuda, then mps, then cpu. `DeviceError` for a name
    that is unknown or not available here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.split(":")[0] not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)} (cuda:N also works)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' asked for but MPS is not available here; use --device cpu or auto")
    return torch.device(name)
