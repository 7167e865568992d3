"""From per-weight (or per-output) scores of the layers in a group to one score per root channel.

A Torch-Pruning group lists ``(dependency, idxs)`` items, one per touched layer, and ``item.root_idxs``
maps the layer's channel ``idxs[j]`` to the root channel ``root_idxs[j]``. Every criterion scores the
members it understands, then :func:`reduce_members` averages the members per root channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
LAYERS = (nn.modules.conv._ConvNd, nn.Linear)

WeightScores = Callable[[nn.Module, torch.Tensor], "torch.Tensor | None"]


def group_items(tp_group: Any) -> Iterator[tuple[Any, nn.Module, bool, list[int], list[int]]]:
    """``(dependency, module, removes_outputs, idxs, root_idxs)`` for each module member of a group.

    Parameter-free ops (add, concat, reshape) and unwrapped parameters are skipped, as are items whose
    channels do not all map to root channels.
    """
    dg = getattr(tp_group, "_DG", None)
    for i, (dep, idxs) in enumerate(tp_group):
        module = dep.target.module
        root_idxs = tp_group[i].root_idxs
        if not isinstance(module, (*LAYERS, *NORMS)) or root_idxs is None or None in root_idxs:
            continue
        if dg is not None:
            is_out = bool(dg.is_out_channel_pruning_fn(dep.handler))
        else:
            is_out = getattr(dep.handler, "__name__", "") == "prune_out_channels"
        yield dep, module, is_out, [int(i) for i in idxs], [int(r) for r in root_idxs]


def per_channel(scores: torch.Tensor, module: nn.Module, is_out: bool) -> torch.Tensor | None:
    """Sum per-weight ``scores`` (shaped like ``module.weight``) over everything but one channel axis.

    Output channels when ``is_out``, else input channels; grouped convolutions are handled exactly
    (input channel ``c`` only meets the filters of its block).
    """
    if isinstance(module, NORMS):
        return scores if scores.dim() == 1 else None
    if isinstance(module, nn.modules.conv._ConvNd):
        groups, transposed = module.groups, module.transposed
    elif isinstance(module, nn.Linear):
        groups, transposed = 1, False
    else:
        return None
    # conv weights are (out, in / groups, *k); transposed ones (in, out / groups, *k)
    if is_out != transposed:
        return scores.flatten(1).sum(1)
    first, second = scores.shape[:2]
    return scores.reshape(groups, first // groups, second, -1).sum(dim=(1, 3)).flatten()


def reduce_members(values: list[tuple[torch.Tensor, list[int]]], channels: int) -> torch.Tensor | None:
    """Mean over members, per root channel, of ``(member scores, root_idxs)`` pairs; ``None`` if empty."""
    if not values:
        return None
    total = torch.zeros(channels, dtype=torch.float64)
    count = torch.zeros(channels, dtype=torch.float64)
    for scores, root_idxs in values:
        index = torch.tensor(root_idxs, dtype=torch.long)
        total.index_add_(0, index, scores.detach().to("cpu", torch.float64))
        count.index_add_(0, index, torch.ones(len(root_idxs), dtype=torch.float64))
    return total / count.clamp(min=1.0)


def weight_group_scores(
    tp_group: Any,
    channels: int,
    weight_scores: WeightScores,
    *,
    only: tuple[type[nn.Module], ...] | None = None,
) -> torch.Tensor | None:
    """Group score from per-weight scores: per member, sum its channel's slice; then mean over members.

    Members are the conv/linear layers whose outputs (filters) or inputs (next layers' slices) are in the
    group and the normalization layers' affine weights; biases are left out, as in Torch-Pruning.

    Args:
        tp_group: The Torch-Pruning group (full index range on its root).
        channels: Number of root channels.
        weight_scores: ``(module, weight) -> per-weight scores`` shaped like ``weight`` (``None`` skips it).
        only: Score only members of these types.
    """
    values = []
    for _dep, module, is_out, idxs, root_idxs in group_items(tp_group):
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or (only is not None and not isinstance(module, only)):
            continue
        scores = weight_scores(module, weight)
        local = None if scores is None else per_channel(scores, module, is_out)
        if local is not None:
            values.append((local[idxs], root_idxs))
    return reduce_members(values, channels)
