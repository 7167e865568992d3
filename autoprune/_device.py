"""Where a model lives: the device (and dtype) of its first parameter, CPU for a model without any."""

from __future__ import annotations

import torch
from torch import nn


def first_parameter(model: nn.Module) -> nn.Parameter | None:
    """The model's first parameter, or ``None`` for a model without parameters."""
    return next(iter(model.parameters()), None)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter; the CPU for a model without parameters."""
    param = first_parameter(model)
    return param.device if param is not None else torch.device("cpu")
