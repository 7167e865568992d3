"""Weight-magnitude criteria: group L1/L2 norms and BatchNorm scaling factors."""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch
from torch import nn

from autoprune.engine.importance._aggregate import weight_group_scores
from autoprune.engine.importance._base import Importance, finalize, finalize_weights, register_importance
from autoprune.engine.structure import PrunableGroup


class GroupMagnitudeImportance(Importance):
    """Group weight magnitude: ``sum |w|^p`` of each member's slice of a channel, averaged over members.

    Members are every layer of the coupled group: the conv/linear filters producing the channel, the
    next layers' input slices reading it and the BN affine weights. Equal to Torch-Pruning's
    ``GroupMagnitudeImportance(p, group_reduction="mean", normalizer=None)``, except that depthwise convs
    count too (Torch-Pruning 1.6.1 skips them, so a MobileNet block's depthwise filters would not matter).
    """

    p: ClassVar[int] = 1

    def __call__(self, group: PrunableGroup) -> torch.Tensor:
        return finalize(weight_group_scores(group.tp_group, group.channels, self._weight_scores), group)

    def _weight_scores(self, module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs().pow(self.p)

    def unstructured_scores(self, param: torch.Tensor, name: str) -> torch.Tensor:
        return finalize_weights(param.detach().abs().pow(self.p))


@register_importance("l1")
class L1Importance(GroupMagnitudeImportance):
    """Group L1 norm (see :class:`GroupMagnitudeImportance`); per weight ``|w|``."""

    p = 1


@register_importance("l2")
class L2Importance(GroupMagnitudeImportance):
    """Group squared L2 norm (see :class:`GroupMagnitudeImportance`); per weight ``w ** 2``."""

    p = 2


@register_importance("bn_scale")
class BNScaleImportance(Importance):
    """``|gamma|`` of the group's BatchNorm layers, averaged over them (Network Slimming).

    Same as Torch-Pruning's ``BNScaleImportance(normalizer=None)``. A group without BatchNorm is scored
    by ``l1`` instead, with one warning per criterion object.
    """

    def __init__(self) -> None:
        self._warned = False

    def __call__(self, group: PrunableGroup) -> torch.Tensor:
        scores = weight_group_scores(
            group.tp_group,
            group.channels,
            lambda _module, weight: weight.detach().abs(),
            only=(nn.modules.batchnorm._BatchNorm,),
        )
        if scores is None:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"bn_scale: group {group.name!r} has no BatchNorm layer with affine weights; scoring it "
                    "(and any further such group) by l1 instead",
                    UserWarning,
                    stacklevel=2,
                )
            return L1Importance()(group)
        return finalize(scores, group)
