"""The width model of a latency table: the ``(in, out)`` kept channels of every conv/linear layer.

Widths follow :meth:`ModelStructure.predict_macs`'s arithmetic (:mod:`autoprune.engine.cost_model`): a
layer keeps its channels less those each group that cuts it removes there, an integer known from the
group's count alone; likewise for its inputs; a depthwise conv keeps as many inputs (and groups) as outputs.
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from autoprune.engine.cost_model import Allocation, Cut, allocation
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError

__all__ = ["Shape", "layer_widths", "reachable_shapes"]

Shape = tuple[int, int]  # (in_channels_kept, out_channels_kept)


def reachable_shapes(structure: ModelStructure, choices: Mapping[str, Sequence[int]]) -> dict[str, set[Shape]]:
    """Per conv/linear layer, every ``(in, out)`` kept width it takes when each group takes any of its choices.

    Raises:
        AutoPruneError: unknown group names, counts outside ``[1, channels]`` or counts a group cannot keep.
    """
    for name in choices:
        structure.group(name)  # an unknown name raises, listing the valid ones
    options: list[list[Allocation]] = []  # per group, the allocation of each choice
    for g in structure.groups:
        counts = _check_counts(structure, g.name, choices[g.name]) if g.name in choices else [g.channels]
        try:
            options.append(sorted({allocation(g, c) for c in counts}))
        except ValueError as exc:
            raise AutoPruneError(str(exc)) from None
    result: dict[str, set[Shape]] = {}
    for name, layer in _layers(structure).items():
        # (removed inputs, removed outputs) over the groups involved, merged as we go so the set stays small
        removed: set[tuple[float, float]] = {(0.0, 0.0)}
        for cut_in, cut_out, gi in layer.terms:
            step = {(_removed(cut_in, a), _removed(cut_out, a)) for a in options[gi]}
            removed = {(x + dx, y + dy) for x, y in removed for dx, dy in step}
        result[name] = {layer.shape(a, b) for a, b in removed}
    return result


def layer_widths(structure: ModelStructure, counts: Mapping[str, int]) -> dict[str, Shape]:
    """``(in, out)`` kept channels of every conv/linear layer when each group keeps ``counts[group]`` channels.

    Groups not in ``counts`` stay whole. Same arithmetic as :meth:`ModelStructure.predict_macs`.

    Raises:
        AutoPruneError: an unknown group name (with the valid ones) or a count the group cannot keep.
    """
    allocations = structure.allocations(counts)
    shapes = {}
    for name, layer in _layers(structure).items():
        a = b = 0.0
        for cut_in, cut_out, gi in layer.terms:
            a, b = a + _removed(cut_in, allocations[gi]), b + _removed(cut_out, allocations[gi])
        shapes[name] = layer.shape(a, b)
    return shapes


def _removed(cut: Cut | None, allocation: Allocation) -> float:
    return 0.0 if cut is None else cut.removed(allocation)


def _check_counts(structure: ModelStructure, name: str, counts: Iterable[int]) -> list[int]:
    channels = structure.group(name).channels
    values = list(counts)
    bad = [c for c in values if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 1 <= c <= channels]
    if bad or not values:
        raise AutoPruneError(
            f"choices of group {name!r} must be a non-empty list of kept counts in [1, {channels}], got {values!r}"
        )
    return [int(c) for c in values]


@dataclass(frozen=True)
class _Layer:
    """A conv/linear layer's dense widths and the groups that cut it: ``(input cut, output cut, group index)``."""

    in_total: int
    out_total: int
    depthwise: bool
    terms: tuple[tuple[Cut | None, Cut | None, int], ...]

    def shape(self, in_removed: float, out_removed: float) -> Shape:
        out = max(1, round(self.out_total - out_removed))
        if self.depthwise:  # its inputs go with its outputs, one channel per group
            return out, out
        return max(1, round(self.in_total - in_removed)), out


_LAYERS: weakref.WeakKeyDictionary[ModelStructure, dict[str, _Layer]] = weakref.WeakKeyDictionary()


def _layers(structure: ModelStructure) -> dict[str, _Layer]:
    """Every conv/linear layer of ``structure``, cached per structure (predict runs often in a search)."""
    if structure not in _LAYERS:
        cost = structure.cost_model
        modules = dict(structure.model.named_modules())
        layers = {}
        for name in structure.costs:
            module = modules[name]
            if isinstance(module, nn.Linear):
                n_in, n_out, depthwise = module.in_features, module.out_features, False
            else:
                assert isinstance(module, nn.modules.conv._ConvNd)
                n_in, n_out = module.in_channels, module.out_channels
                depthwise = name in cost.depthwise and n_in == n_out
            outs = {c.group: c for c in cost.out_sides[name].cuts} if name in cost.out_sides else {}
            ins = {c.group: c for c in cost.in_sides[name].cuts} if name in cost.in_sides else {}
            terms = tuple((ins.get(gi), outs.get(gi), gi) for gi in sorted(set(outs) | set(ins)))
            layers[name] = _Layer(n_in, n_out, depthwise, terms)
        _LAYERS[structure] = layers
    return _LAYERS[structure]
