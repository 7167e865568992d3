"""Multiply-accumulate (MAC) and parameter counts.

Convention: MACs are the multiply-accumulates of convolutions and linear layers for ONE input sample
(batch size 1). Normalisation, activations, pooling and additions are not counted: they are a small
fraction of the work of a CNN and every pruning paper reports conv/linear MACs.

``effective`` MACs count only non-zero weights (what a sparse kernel could skip); dense kernels on CPU
and GPU do the full dense work regardless of zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autoprune._device import first_parameter, model_device

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class LayerCost:
    """The cost of one conv/linear layer for one input sample.

    Attributes:
        macs: Dense multiply-accumulates.
        effective_macs: Multiply-accumulates of non-zero weights only.
        out_positions: Output positions per output channel (H_out*W_out for a 2-d conv; the product of
            the leading dims for a linear layer).
    """

    macs: int
    effective_macs: int
    out_positions: int


@dataclass(frozen=True)
class ModelCost:
    """Total cost of a model for one input sample."""

    macs: int
    effective_macs: int
    params: int
    nonzero_params: int


def _layer_cost(module: nn.Module, output: torch.Tensor) -> LayerCost:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    if isinstance(module, nn.Linear):
        # output: (N, ..., out_features); each output feature reads in_features weights
        positions = int(output[0].numel() // module.out_features)
    else:
        # output: (N, C_out, *spatial); each output element reads (C_in/groups)*prod(kernel) weights
        positions = int(output[0, 0].numel())
    macs = positions * weight.numel()
    effective = positions * int(torch.count_nonzero(weight.detach()))
    return LayerCost(macs=macs, effective_macs=effective, out_positions=positions)


def _example_input(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    param = first_parameter(model)
    device = model_device(model)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    shape = (1, *input_shape[1:])
    return torch.zeros(shape, device=device, dtype=dtype)


def layer_costs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, LayerCost]:
    """Cost of every conv/linear layer (by module name) for one sample of ``input_shape``.

    Args:
        model: Any module; it is run once in eval mode on zeros (its training flag is restored).
        input_shape: ``(N, C, H, W)``; the batch size is ignored (costs are per sample).

    Returns:
        ``{module_name: LayerCost}`` in execution order; a module called twice is counted twice.
    """
    costs: dict[str, LayerCost] = {}
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        cost = _layer_cost(module, output)
        name = names[module]
        if name in costs:  # shared module called again: accumulate
            prev = costs[name]
            cost = LayerCost(
                prev.macs + cost.macs, prev.effective_macs + cost.effective_macs, cost.out_positions
            )
        costs[name] = cost

    for module in model.modules():
        if isinstance(module, _COUNTED):
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(_example_input(model, input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return costs


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(params, nonzero_params)`` over all parameters (shared parameters counted once)."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


def count_cost(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """MACs (dense and effective) and parameters (all and non-zero) of ``model`` for one sample."""
    costs = layer_costs(model, input_shape).values()
    params, nonzero = count_params(model)
    return ModelCost(
        macs=sum(c.macs for c in costs),
        effective_macs=sum(c.effective_macs for c in costs),
        params=params,
        nonzero_params=nonzero,
    )


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Dense conv/linear MACs of ``model`` for one sample of ``input_shape``."""
    return count_cost(model, input_shape).macs
