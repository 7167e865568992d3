"""The width model of a latency table: the ``(in, out)`` kept channels of every conv/linear layer.

Widths follow :meth:`ModelStructure.predict_macs`'s arithmetic: a layer keeps
``round(out_channels * (1 - sum(share * (1 - count / channels))))`` output channels over the groups that cut
them, and likewise for its inputs; a depthwise conv keeps as many inputs (and groups) as outputs.
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError

__all__ = ["Shape", "layer_widths", "reachable_shapes"]

Shape = tuple[int, int]  # (in_channels_kept, out_channels_kept)


def reachable_shapes(structure: ModelStructure, choices: Mapping[str, Sequence[int]]) -> dict[str, set[Shape]]:
    """Per conv/linear layer, every ``(in, out)`` kept width it takes when each group takes any of its choices.

    Raises:
        AutoPruneError: unknown group names or counts outside ``[1, channels]``.
    """
    for name in choices:
        structure.group(name)  # an unknown name raises, listing the valid ones
    options: list[list[float]] = []  # per group, the removed fraction (1 - count / channels) of each choice
    for g in structure.groups:
        counts = _check_counts(structure, g.name, choices[g.name]) if g.name in choices else [g.channels]
        options.append(sorted({1.0 - c / g.channels for c in counts}))
    result: dict[str, set[Shape]] = {}
    for name, layer in _layers(structure).items():
        # (removed share of inputs, removed share of outputs) over the groups involved, summed in the same
        # order as layer_widths so both give bit-identical widths; merged as we go, so the set stays small
        removed: set[tuple[float, float]] = {(0.0, 0.0)}
        for gi, w_in, w_out in layer.terms:
            removed = {(a + w_in * r, b + w_out * r) for a, b in removed for r in options[gi]}
        result[name] = {layer.shape(1.0 - a, 1.0 - b) for a, b in removed}
    return result


def layer_widths(structure: ModelStructure, counts: Mapping[str, int]) -> dict[str, Shape]:
    """``(in, out)`` kept channels of every conv/linear layer when each group keeps ``counts[group]`` channels.

    Groups not in ``counts`` stay whole. Same arithmetic as :meth:`ModelStructure.predict_macs`.

    Raises:
        AutoPruneError: an unknown group name (with the valid ones).
    """
    fractions = structure._fractions(counts)
    shapes = {}
    for name, layer in _layers(structure).items():
        a = b = 0.0
        for gi, w_in, w_out in layer.terms:
            r = 1.0 - fractions[gi]
            a, b = a + w_in * r, b + w_out * r
        shapes[name] = layer.shape(1.0 - a, 1.0 - b)
    return shapes


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
    """A conv/linear layer's dense widths and the groups that cut it: ``(group index, in share, out share)``."""

    in_total: int
    out_total: int
    depthwise: bool
    terms: tuple[tuple[int, float, float], ...]

    def shape(self, in_keep: float, out_keep: float) -> Shape:
        out = max(1, round(self.out_total * out_keep))
        if self.depthwise:  # its inputs go with its outputs, one channel per group
            return out, out
        return max(1, round(self.in_total * in_keep)), out


_LAYERS: weakref.WeakKeyDictionary[ModelStructure, dict[str, _Layer]] = weakref.WeakKeyDictionary()


def _layers(structure: ModelStructure) -> dict[str, _Layer]:
    """Every conv/linear layer of ``structure``, cached per structure (predict runs often in a search)."""
    if structure not in _LAYERS:
        modules = dict(structure.model.named_modules())
        layers = {}
        for name in structure.costs:
            module = modules[name]
            if isinstance(module, nn.Linear):
                n_in, n_out, depthwise = module.in_features, module.out_features, False
            else:
                assert isinstance(module, nn.modules.conv._ConvNd)
                n_in, n_out = module.in_channels, module.out_channels
                depthwise = name in structure._depthwise and n_in == n_out
            outs = dict(structure._out_of.get(name, ()))
            ins = dict(structure._in_of.get(name, ()))
            terms = tuple((gi, ins.get(gi, 0.0), outs.get(gi, 0.0)) for gi in sorted(set(outs) | set(ins)))
            layers[name] = _Layer(n_in, n_out, depthwise, terms)
        _LAYERS[structure] = layers
    return _LAYERS[structure]
