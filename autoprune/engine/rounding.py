"""Channel rounding: the step a group's kept count moves in (``round_to`` and its channel blocks: grouped
convolutions, GroupNorm), its smallest allowed count, and rounding a wished count to them.

``round_to`` is one value for every group (an ``int``) or a :class:`Rounding`: a value per group (e.g.
measured latency steps, :mod:`autoprune.engine.latency_steps`) with a default for the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from torch import nn

if TYPE_CHECKING:
    from autoprune.engine.structure import PrunableGroup


@dataclass(frozen=True)
class Rounding:
    """Channel rounding per group: ``groups[name]`` for the groups listed, ``default`` for the others.

    Attributes:
        default: Rounding of the groups not in ``groups`` (>= 1).
        groups: Group name -> its own rounding (>= 1).

    Raises:
        ValueError: a rounding below 1.
    """

    default: int = 1
    groups: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in {"default": self.default, **self.groups}.items() if not v >= 1}
        if bad:
            raise ValueError(f"round_to {bad} must be >= 1 (1 = no rounding)")

    def of(self, name: str) -> int:
        """The rounding of group ``name``."""
        return int(self.groups.get(name, self.default))


#: One rounding for every group, or one per group.
RoundTo: TypeAlias = int | Rounding


def round_to_of(round_to: RoundTo, name: str) -> int:
    """The rounding ``round_to`` gives group ``name``."""
    return round_to.of(name) if isinstance(round_to, Rounding) else round_to


def group_step(group: PrunableGroup, round_to: RoundTo) -> int:
    """The granularity of kept counts in ``group``: a multiple of its ``round_to`` and its channel groups."""
    return min(math.lcm(round_to_of(round_to, group.name), group.channel_groups), group.channels)


def group_min(group: PrunableGroup, round_to: RoundTo) -> int:
    """The smallest allowed kept count of ``group``: one step, and at least one channel block per segment
    (every branch of a concatenation keeps a channel); the whole group if no smaller count is allowed."""
    step = group_step(group, round_to)
    least = math.ceil(group.min_channels / step) * step
    return least if least < group.channels else group.channels


def round_count(group: PrunableGroup, value: float, round_to: RoundTo) -> int:
    """``value`` channels of ``group`` rounded to its nearest allowed count (:func:`group_step`, :func:`group_min`)."""
    return round_channels(value, group.channels, group_step(group, round_to), least=group_min(group, round_to))


def _divisor(module: nn.Module) -> int:
    """How many blocks the layer's channels must keep equal (1: no constraint)."""
    if isinstance(module, nn.GroupNorm):
        return module.num_groups
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1:
        depthwise = module.groups == module.out_channels == module.in_channels
        return 1 if depthwise else module.groups
    return 1


def _width(module: nn.Module, out_side: bool) -> int:
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    assert isinstance(module, nn.modules.conv._ConvNd)
    return module.out_channels if out_side else module.in_channels


def channel_blocks(tp_group: Any, channels: int, is_out: Any, name_of: Any) -> tuple[int, str | None]:
    """Blocks of a group's channels that grouped (not depthwise) convolutions and GroupNorms keep together.

    Such a layer needs the same number of channels in each of its groups, so the group keeps the same
    positions in every block (kept counts are multiples of the blocks). That only works when the layer's
    channels are all in this group.

    Args:
        tp_group: Torch-Pruning's group.
        channels: The group's channels.
        is_out: ``handler -> bool``: whether a dependency removes output channels.
        name_of: ``module -> name``.

    Returns:
        ``(blocks, None)``, or ``(1, reason)`` naming the layer when the group cannot satisfy it (the layer
        is split over several groups, e.g. a GroupNorm after a concatenation, or its groups do not divide
        the group's channels).
    """
    blocks = 1
    for item in tp_group:
        module = item.dep.target.module
        need = _divisor(module)
        if need <= 1:
            continue
        covered = len(set(item.idxs))
        width = _width(module, bool(is_out(item.dep.handler)))
        if covered != width or channels % need:
            name = name_of.get(module, type(module).__name__)
            return 1, (
                f"{type(module).__name__} {name!r} ({need} groups) has only {covered} of its {width} channels in "
                f"this group of {channels} (the rest come from other groups, e.g. through a concatenation), so "
                "pruning the group could leave its groups unequal"
            )
        blocks = math.lcm(blocks, need)
    if channels % blocks:
        return 1, f"its grouped layers need multiples of {blocks} channels, which do not divide its {channels}"
    return blocks, None


def round_channels(value: float, channels: int, round_to: int, *, least: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``round_to``, within ``[least, channels]``.

    ``least`` defaults to ``min(round_to, channels)``.
    """
    if round_to < 1:
        raise ValueError(f"round_to={round_to} must be >= 1")
    low = min(round_to, channels) if least is None else least
    n = round(value / round_to) * round_to
    return max(low, min(channels, n), 1)
