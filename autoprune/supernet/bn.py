"""Adaptive BatchNorm (EagleEye): re-estimate BN statistics of a sub-network on a few batches."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
from torch import nn

from autoprune._device import model_device
from autoprune._types import Batch


@torch.no_grad()
def adaptive_bn(
    model: nn.Module, batches: Iterable[Batch], num_batches: int, *, device: torch.device | str | None = None
) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them as a plain average over batches.

    Weights are untouched; the model is left in eval mode.

    Args:
        model: The (sub-)network.
        batches: Calibration batches from the training split.
        num_batches: How many to use (more is more accurate and slower).
        device: Where to run (default: the model's parameters' device).

    Returns:
        The number of batches actually used.

    Raises:
        ValueError: ``num_batches < 1`` or the loader yielded nothing.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches={num_batches} must be >= 1 for adaptive BatchNorm")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if device is None:
        device = model_device(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    used = 0
    try:
        for x, _ in islice(batches, num_batches):
            model(x.to(device))
            used += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    if used == 0 and norms:
        raise ValueError("adaptive BatchNorm got no calibration batches: the loader is empty")
    return used
