"""Removing a group's channels from a model, straight from the group found on the dense model.

A Torch-Pruning group found with every channel of its root lists, for each layer it touches, the layer's
channel indices and the root channel each one follows. Removing some root channels is then a matter of
picking those items and calling their pruning functions: no second walk of the graph per group, and no
recomputation of the graph's index mappings (which took most of the time of applying a plan to a
DenseNet: one update of every concatenation's offsets per group). The indices stay those of the dense
model; :class:`ChannelRemover` shifts them past the channels already removed from the same layer by
earlier groups (a conv after a concatenation loses input channels to several groups).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from autoprune.engine.structure import PrunableGroup

#: One layer's part of a removal: (layer or parameter name, is a parameter, removes output channels,
#: Torch-Pruning's pruning function, its pruning dim, the dense model's indices to remove).
Step = tuple[str, bool, bool, Any, Any, list[int]]


def removal_steps(
    group: PrunableGroup, drop: Collection[int], name_of: dict[Any, str], is_out: Callable[[Any], bool]
) -> list[Step]:
    """What removing root channels ``drop`` of ``group`` removes from each layer it touches.

    Args:
        group: A group with its Torch-Pruning group (``tp_group``, found with every channel of its root).
        drop: Root channel indices to remove.
        name_of: Module or unwrapped parameter -> its name in the model.
        is_out: Whether a Torch-Pruning pruning function removes output channels.
    """
    drop = set(drop)
    steps: list[Step] = []
    if not drop:
        return steps
    for item in group.tp_group:
        target = item.dep.target.module
        name = name_of.get(target)
        if name is None:  # a parameter-free op (add, concat, reshape): nothing to remove
            continue
        # an unknown root (Torch-Pruning could not map it) follows the channel at its position, as in the groups
        idxs = [int(i) for i, r in zip(item.idxs, item.root_idxs, strict=True)
                if (int(i) % group.channels if r is None else int(r)) in drop]
        if idxs:
            steps.append((name, isinstance(target, nn.Parameter), bool(is_out(item.dep.handler)), item.dep.handler,
                          item.dep.target.pruning_dim, idxs))
    return steps


class ChannelRemover:
    """Applies removal steps (in the dense model's indices) to ``model``, in place."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._removed: dict[tuple[str, bool], list[int]] = {}  # sorted dense indices already removed

    def apply(self, steps: list[Step]) -> None:
        for name, is_param, out_side, handler, pruning_dim, idxs in steps:
            key = (name, out_side or is_param)
            removed = self._removed.get(key, [])
            done = set(removed)
            fresh = sorted(set(idxs) - done)
            if not fresh:
                continue
            current = [i - bisect.bisect_left(removed, i) for i in fresh]
            self._removed[key] = sorted(done.union(fresh))
            handler.__self__.pruning_dim = pruning_dim  # as Torch-Pruning's Dependency.__call__ does
            if is_param:
                parent, _, attr = name.rpartition(".")
                owner = self.model.get_submodule(parent)
                setattr(owner, attr, handler(getattr(owner, attr), current))
            else:
                handler(self.model.get_submodule(name), current)
