"""The exact MACs/params model of :class:`~autoprune.engine.structure.ModelStructure`.

Each conv/linear (and every other parameterised layer) is cut on its output and input side by the groups
it belongs to. A group keeping ``count`` channels keeps, in a layer, one known number of channels: its
kept positions per segment (:func:`autoprune.engine.segments.allocate`) times the channels each brings to
that layer. So the kept widths of every layer are integers computed from the counts alone, and the MACs
and parameters follow: ``dense * kept_out / out * kept_in / in`` per layer (a depthwise conv's inputs go
with its outputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from autoprune.engine.segments import allocate

if TYPE_CHECKING:
    from autoprune.engine.structure import PrunableGroup
    from autoprune.metrics.macs import LayerCost

Allocation = tuple[float, ...]  # kept positions per segment of one group (integers but for odd counts)


@dataclass(frozen=True)
class Cut:
    """How one group cuts one side of one layer.

    Attributes:
        group: Index of the group in ``structure.groups``.
        size: The layer's channels (or features) in the group.
        per_segment: The layer's channels kept per kept position of each of the group's segments.
    """

    group: int
    size: int
    per_segment: tuple[int, ...]

    def removed(self, allocation: Allocation) -> float:
        return self.size - sum(a * m for a, m in zip(allocation, self.per_segment, strict=True))


@dataclass(frozen=True)
class Side:
    """One side (outputs or inputs) of a layer: its dense width and the groups cutting it."""

    total: int
    cuts: tuple[Cut, ...]

    def kept(self, allocations: Sequence[Allocation]) -> float:
        return self.total - sum(c.removed(allocations[c.group]) for c in self.cuts)


class CostModel:
    """Kept widths, MACs and parameters of a model for kept counts per group (exact, see module docstring).

    Args:
        model: The model the groups belong to.
        groups: Its groups.
        costs: Dense MACs of its conv/linear layers.
    """

    def __init__(self, model: nn.Module, groups: Sequence[PrunableGroup], costs: Mapping[str, LayerCost]) -> None:
        self.groups = tuple(groups)
        self.costs = dict(costs)
        modules = dict(model.named_modules())
        params = dict(model.named_parameters())
        cuts: dict[tuple[str, str], list[Cut]] = {}
        totals: dict[tuple[str, str], int] = {}
        for gi, g in enumerate(self.groups):
            for m in g.members:
                total = _total(modules.get(m.name), params.get(m.name), m.kind, m.size)
                if total is None:
                    continue
                cuts.setdefault((m.name, m.kind), []).append(Cut(gi, m.size, m.per_segment or (m.size,)))
                totals[(m.name, m.kind)] = total
        self.out_sides = {n: Side(totals[(n, k)], tuple(c)) for (n, k), c in cuts.items() if k == "out"}
        self.in_sides = {n: Side(totals[(n, k)], tuple(c)) for (n, k), c in cuts.items() if k == "in"}
        self.depthwise = {
            n for n, mod in modules.items()
            if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups == mod.out_channels > 1
        }
        self.param_terms: list[tuple[str, str, int]] = []  # (owner, kind, numel)
        for pname, p in params.items():
            owner, _, leaf = pname.rpartition(".")
            if pname in self.out_sides:  # unwrapped parameter pruned on its own
                self.param_terms.append((pname, "out", p.numel()))
            elif isinstance(modules.get(owner), (nn.Linear, nn.modules.conv._ConvNd)) and leaf == "weight":
                self.param_terms.append((owner, "both", p.numel()))
            else:
                self.param_terms.append((owner, "out", p.numel()))

    def allocations(self, keep: Mapping[str, int]) -> list[Allocation]:
        """Kept positions per segment of every group (``keep[name]`` channels; missing groups whole).

        Raises:
            ValueError: a count below the group's minimum (one block per segment) or not a multiple of its blocks.
        """
        return [allocation(g, keep.get(g.name, g.channels)) for g in self.groups]

    def fraction(self, sides: Mapping[str, Side], name: str, allocations: Sequence[Allocation]) -> float:
        side = sides.get(name)
        return 1.0 if side is None else side.kept(allocations) / max(side.total, 1)

    def macs(self, allocations: Sequence[Allocation]) -> int:
        total = 0.0
        for name, cost in self.costs.items():
            out_keep = self.fraction(self.out_sides, name, allocations)
            in_keep = 1.0 if name in self.depthwise else self.fraction(self.in_sides, name, allocations)
            total += cost.macs * out_keep * in_keep
        return round(total)

    def params(self, allocations: Sequence[Allocation]) -> int:
        total = 0.0
        for owner, kind, numel in self.param_terms:
            out_keep = self.fraction(self.out_sides, owner, allocations)
            skip_in = kind == "out" or owner in self.depthwise
            in_keep = 1.0 if skip_in else self.fraction(self.in_sides, owner, allocations)
            total += numel * out_keep * in_keep
        return round(total)


def allocation(group: PrunableGroup, count: int) -> Allocation:
    """Kept positions per segment when ``group`` keeps ``count`` channels.

    A group of one segment takes any count in ``[1, channels]`` (a count off its channel blocks counts
    as a fraction of a position: a prediction for it, not a model one can build).

    Raises:
        ValueError: a count outside ``[1, channels]``; for a group of several segments also a count that
            is not a multiple of its channel blocks or leaves a segment empty.
    """
    blocks = group.channel_groups
    if not group.segments and 1 <= count <= group.channels:
        return (count // blocks if count % blocks == 0 else count / blocks,)
    if count % blocks or not group.min_channels <= count <= group.channels:
        raise ValueError(
            f"group {group.name!r} cannot keep {count} channels: keep a multiple of {blocks} from "
            f"{group.min_channels} (one channel block per concatenated branch) to {group.channels}"
        )
    return allocate([len(s) for s in group.segments], count // blocks)


def _total(module: nn.Module | None, param: torch.Tensor | None, kind: str, size: int) -> int | None:
    """The dense width of one side of a layer (or a parameter pruned on its own); None: not a layer."""
    if module is not None:
        if isinstance(module, nn.Linear):
            return module.out_features if kind == "out" else module.in_features
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.out_channels if kind == "out" else module.in_channels
        weight = getattr(module, "weight", None)
        return weight.shape[0] if isinstance(weight, torch.Tensor) else size
    if param is not None:
        return param.numel()
    return None
