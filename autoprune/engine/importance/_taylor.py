"""First-order Taylor criterion: how much the loss would move if a weight were removed."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.engine.importance._aggregate import weight_group_scores
from autoprune.engine.importance._base import (
    Batch,
    Importance,
    finalize,
    finalize_weights,
    register_importance,
)
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError


@register_importance("taylor")
class TaylorImportance(Importance):
    """``sum over batches of |w * dL/dw|`` (Molchanov et al., 2019), aggregated over the group like ``l1``.

    ``L`` is the cross-entropy of the model on each calibration batch, in eval mode so BN statistics stay
    put. Gradients come from ``torch.autograd.grad``, so the model's ``.grad`` fields are never touched.
    """

    needs_data = True

    def __init__(self) -> None:
        self._scores: dict[str, torch.Tensor] | None = None
        self._params: dict[str, torch.Size] = {}
        self._prefix: dict[nn.Module, str] = {}

    def _collect(self, model: nn.Module, structure: ModelStructure, batches: Iterator[Batch]) -> None:
        named = list(model.named_parameters())
        flags = [p.requires_grad for _, p in named]
        scores: dict[str, torch.Tensor] = {}
        try:
            for _, p in named:  # frozen layers get scores too
                p.requires_grad_(True)
            with torch.enable_grad():
                for inputs, targets in batches:
                    loss = F.cross_entropy(model(inputs), targets)
                    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
                    for (name, p), grad in zip(named, grads, strict=True):
                        if grad is not None:
                            term = (p.detach() * grad).abs()
                            scores[name] = scores[name] + term if name in scores else term
        finally:
            for (_, p), flag in zip(named, flags, strict=True):
                p.requires_grad_(flag)
        self._scores = scores
        self._params = {name: p.shape for name, p in named}
        self._prefix = {m: f"{n}." if n else "" for n, m in model.named_modules()}

    def _prepared(self) -> dict[str, torch.Tensor]:
        if self._scores is None:
            raise self._no_data_error()
        return self._scores

    def _weight_scores(self, module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
        scores = self._prepared()
        prefix = self._prefix.get(module)
        if prefix is None:
            raise AutoPruneError(
                f"taylor: layer {type(module).__name__} is not part of the model given to prepare(); "
                "call prepare() again with the model the groups come from"
            )
        return scores.get(f"{prefix}weight", torch.zeros_like(weight))  # unused layer: no gradient

    def __call__(self, group: PrunableGroup) -> torch.Tensor:
        self._prepared()
        return finalize(weight_group_scores(group.tp_group, group.channels, self._weight_scores), group)

    def unstructured_scores(self, param: torch.Tensor, name: str) -> torch.Tensor:
        scores = self._prepared()
        if name not in self._params:
            raise AutoPruneError(
                f"taylor: no parameter {name!r} in the model given to prepare(); use a name from "
                f"model.named_parameters(), e.g. {list(self._params)[:3]}"
            )
        if param.shape != self._params[name]:
            raise AutoPruneError(
                f"taylor: parameter {name!r} has shape {tuple(param.shape)} but had "
                f"{tuple(self._params[name])} in prepare(); call prepare() again after changing the model"
            )
        return finalize_weights(scores.get(name, torch.zeros_like(param))).to(param.device)
