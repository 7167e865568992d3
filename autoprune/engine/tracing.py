"""Tracing helpers of :mod:`autoprune.engine.structure`: which layers the dependency graph supports, a
barrier for the others, and the layers that produce the model's output (never pruned)."""

from __future__ import annotations

from collections.abc import Sequence

import torch_pruning as tp
from torch import nn

from autoprune.errors import AutoPruneError


class BarrierPruner(tp.pruner.function.BasePruningFunc):
    """Marks a module the graph cannot prune: groups reaching it are dropped (see ``_drop_barrier_groups``)."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise AutoPruneError(f"internal error: tried to prune unsupported layer {type(layer).__name__}")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise AutoPruneError(f"internal error: tried to prune unsupported layer {type(layer).__name__}")

    def get_out_channels(self, layer: nn.Module) -> None:
        return None

    def get_in_channels(self, layer: nn.Module) -> None:
        return None


def is_supported(module: nn.Module, dg: tp.DependencyGraph) -> bool:
    optype = tp.ops.module2type(module)
    return optype in dg.REGISTERED_PRUNERS and optype != tp.ops.OPTYPE.ELEMENTWISE


def find_unsupported_layers(model: nn.Module) -> list[str]:
    """Names of leaf modules that own parameters the dependency graph has no pruning rule for."""
    dg = tp.DependencyGraph()
    found = []
    for name, module in model.named_modules():
        has_params = any(True for _ in module.parameters(recurse=False))
        is_leaf = not any(True for _ in module.children())
        if has_params and is_leaf and not is_supported(module, dg):
            found.append(name)
    return found


def output_layers(dg: tp.DependencyGraph) -> list[nn.Module]:
    """Conv/linear layers whose output reaches a model output through parameter-free ops only."""
    heads: list[nn.Module] = []
    stack = [n for n in dg.module2node.values() if isinstance(n.module, tp.ops._OutputOp)]
    if not stack:  # older versions: nodes without outputs are the outputs
        stack = [n for n in dg.module2node.values() if not n.outputs]
    seen = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        module = node.module
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            heads.append(module)
            continue
        stack.extend(node.inputs)
    return heads
