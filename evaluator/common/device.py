"""`--device auto`: cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from evaluator.common.errors import ModelError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ModelError, ValueError):
    """A device name that is unknown or not available here (the model cannot be placed on it)."""


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
