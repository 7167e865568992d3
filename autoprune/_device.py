"""Devices: where a model lives (its first parameter's device, CPU without any) and what a device name means."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(name: str, *, option: str = "--device") -> torch.device:
    """``auto`` picks CUDA when available; a name that is not a device, or CUDA without one, is a clear error."""
    from autoprune.errors import AutoPruneError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AutoPruneError(f"{option} {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AutoPruneError(f"{option} {name} asked for CUDA but none is available; use {option} cpu")
    return device


def first_parameter(model: nn.Module) -> nn.Parameter | None:
    """The model's first parameter, or ``None`` for a model without parameters."""
    return next(iter(model.parameters()), None)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter; the CPU for a model without parameters."""
    param = first_parameter(model)
    return param.device if param is not None else torch.device("cpu")
