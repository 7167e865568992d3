"""Activation criteria over calibration batches: mean activation and APoZ."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from autoprune.engine.importance._aggregate import group_items, reduce_members
from autoprune.engine.importance._base import (
    Batch,
    Importance,
    finalize,
    register_importance,
)
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError


@dataclass
class _Stats:
    """Per-channel sums of ``relu(output)`` and of zero positions, over ``positions`` positions."""

    relu_sum: torch.Tensor | None = None
    zeros: torch.Tensor | None = None
    positions: int = 0


def _observed(tp_group: Any) -> list[tuple[nn.Module, list[int], list[int]]]:
    """``(module, idxs, root_idxs)`` of the members whose outputs carry the group's activations.

    The BatchNorm layers, and the conv/linear layers that no BatchNorm of the group follows (directly or
    through parameter-free ops such as a concatenation).
    """
    items = [(dep, module, idxs, root) for dep, module, is_out, idxs, root in group_items(tp_group) if is_out]
    norms = {id(m) for _, m, _, _ in items if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    observed: list[tuple[nn.Module, list[int], list[int]]] = []
    for dep, module, idxs, root in items:
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if is_norm or (isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and not _feeds(dep, norms)):
            observed.append((module, idxs, root))
    return observed


def _feeds(dep: Any, norms: set[int]) -> bool:
    """Whether the layer's output reaches one of ``norms`` through parameter-free ops (concat, reshape)."""
    stack, seen = list(dep.target.outputs), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if id(node.module) in norms:
            return True
        has_params = not isinstance(node.module, nn.Module) or any(True for _ in node.module.parameters())
        if not has_params:
            stack.extend(node.outputs)
    return False


def _record(stats: _Stats, channel_last: bool, _module: nn.Module, _inputs: Any, output: Any) -> None:
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        return
    act = torch.relu(output.detach().float()).movedim(-1 if channel_last else 1, -1)
    act = act.reshape(-1, act.shape[-1])
    relu_sum, zeros = act.sum(0, dtype=torch.float64), (act == 0).sum(0, dtype=torch.float64)
    stats.relu_sum = relu_sum if stats.relu_sum is None else stats.relu_sum + relu_sum
    stats.zeros = zeros if stats.zeros is None else stats.zeros + zeros
    stats.positions += act.shape[0]


class ActivationImportance(Importance):
    """Base of criteria computed from ``relu`` of the group's activations on calibration batches.

    Hooks the outputs of each group's BatchNorm layers (or of its conv/linear layers where no BatchNorm
    follows), in eval mode without gradients. A member's channel statistic goes to its root channel
    through Torch-Pruning's ``root_idxs``; members are averaged per root channel.
    """

    needs_data = True

    def __init__(self) -> None:
        self._stats: dict[str, _Stats] | None = None
        self._names: dict[nn.Module, str] = {}

    @abc.abstractmethod
    def _channel_scores(self, stats: _Stats) -> torch.Tensor:
        """One score per output channel of a hooked layer from its statistics."""

    def _collect(self, model: nn.Module, structure: ModelStructure, batches: Iterator[Batch]) -> None:
        names = {m: n for n, m in model.named_modules()}
        stats: dict[str, _Stats] = {}
        handles = []
        try:
            for group in structure.groups:
                for module, _, _ in _observed(group.tp_group):
                    name = names.get(module)
                    if name is not None and name not in stats:
                        stats[name] = _Stats()
                        hook = partial(_record, stats[name], isinstance(module, nn.Linear))
                        handles.append(module.register_forward_hook(hook))
            with torch.no_grad():
                for inputs, _ in batches:
                    model(inputs)
        finally:
            for handle in handles:
                handle.remove()
        self._stats, self._names = stats, names

    def __call__(self, group: PrunableGroup) -> torch.Tensor:
        if self._stats is None:
            raise self._no_data_error()
        values = []
        for module, idxs, root_idxs in _observed(group.tp_group):
            name = self._names.get(module)
            stats = self._stats.get(name) if name is not None else None
            if stats is None:
                raise AutoPruneError(
                    f"{self.name}: group {group.name!r} was not seen by prepare(); call prepare() with the "
                    "model and structure the group comes from"
                )
            if stats.positions == 0:  # the layer never ran on the calibration batches
                continue
            values.append((self._channel_scores(stats)[idxs], root_idxs))
        return finalize(reduce_members(values, group.channels), group)


@register_importance("activation_mean")
class ActivationMeanImportance(ActivationImportance):
    """Mean of ``relu`` of the channel's activations over calibration positions; higher = kept."""

    def _channel_scores(self, stats: _Stats) -> torch.Tensor:
        assert stats.relu_sum is not None
        return stats.relu_sum.cpu() / stats.positions


@register_importance("apoz")
class APoZImportance(ActivationImportance):
    """``1 - APoZ``: the fraction of positions where ``relu`` of the channel is non-zero (Hu et al., 2016).

    A channel that is zero more often (higher Average Percentage of Zeros) scores lower.
    """

    def _channel_scores(self, stats: _Stats) -> torch.Tensor:
        assert stats.zeros is not None
        return 1.0 - stats.zeros.cpu() / stats.positions
