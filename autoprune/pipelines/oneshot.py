"""The search pipeline's first half: build a supernet once, then extract any sub-network without finetuning.

``build_supernet`` ranks channels of a trained model, trains the shared weights with the sandwich rule
over a search space, and checkpoints every epoch. ``extract_subnet`` turns one candidate into a
physically pruned model with the shared weights and recalibrated BatchNorm. Searchers
(:mod:`autoprune.pipelines.search`) sit between the two and call the evaluator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoprune._types import Batch
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError
from autoprune.search_spaces import SearchSpace, auto_space, load_space, space_names
from autoprune.supernet import Supernet, SupernetConfig, SupernetHistory, train_supernet


class SpaceSampler:
    """Adapts a :class:`SearchSpace` to sandwich training: largest, smallest, random choices.

    By default random sub-networks are drawn over the whole space (not projected onto the budget), so the
    shared weights learn every width they may later be asked for. With ``near=(low, high)`` each random
    sub-network is instead a uniformly random choice per group projected onto a budget drawn uniformly
    from ``[low, high]`` (fractions of the dense cost): training spends its passes on the structures a
    search at those budgets will compare (the budget-filling projection of
    :meth:`SearchSpace.project`). The largest and smallest sub-networks stay as they are.

    Raises:
        AutoPruneError: ``near`` is not ``0 < low <= high <= 1``, or ``low`` is below the space's smallest
            sub-network (no candidate of the space costs that little).
    """

    def __init__(self, space: SearchSpace, near: tuple[float, float] | None = None) -> None:
        self.space = space
        self.near = near
        if near is not None:
            low, high = (float(v) for v in near)
            if not 0.0 < low <= high <= 1.0:
                raise AutoPruneError(f"--sample-near {low:g}:{high:g} must satisfy 0 < LOW <= HIGH <= 1 (fractions "
                                     "of the dense cost), e.g. 0.2:0.4")
            least = space.min_cost()
            if low < least - 1e-9:
                raise AutoPruneError(f"--sample-near {low:g}:{high:g}: the space's smallest sub-network keeps "
                                     f"{least:.3f} of the dense {space.metric}; start the range at {least:.3f} or "
                                     "above")
            self.near = (low, high)

    def largest(self) -> dict[str, int]:
        return self.space.largest()

    def smallest(self) -> dict[str, int]:
        return self.space.smallest()

    def random_choice(self, rng: np.random.Generator) -> dict[str, int]:
        drawn = {g.name: int(g.choices[int(rng.integers(len(g.choices)))]) for g in self.space.groups}
        if self.near is None:
            return drawn
        target = float(rng.uniform(*self.near))
        space = dataclasses.replace(self.space, target=target)
        return space.project({g.name: g.ratio(drawn[g.name]) for g in self.space.groups})


def resolve_space(
    structure: ModelStructure, model_name: str, space: str | Path | None, target: float | None
) -> SearchSpace:
    """``space``: a YAML path, a bundled space name, ``"auto"``, or ``None`` (bundled for the model, else auto)."""
    if space is None:
        space = model_name if model_name in space_names() else "auto"
    if str(space) == "auto":
        return auto_space(structure, target=0.5 if target is None else target)
    return load_space(space, structure, target=target)


@dataclass
class SupernetRun:
    """What :func:`build_supernet` returns."""

    supernet: Supernet
    space: SearchSpace
    history: SupernetHistory


def build_supernet(
    model: nn.Module,
    input_shape: tuple[int, ...],
    space: SearchSpace,
    train_loader: Iterable[Batch],
    config: SupernetConfig,
    *,
    criterion: str = "l1",
    calibration: Iterable[Batch] | None = None,
    checkpoint: Path | None = None,
    meta: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_epoch: Callable[[int, SupernetHistory], None] | None = None,
    sample_near: tuple[float, float] | None = None,
    scores: dict[str, torch.Tensor] | None = None,
) -> SupernetRun:
    """Rank channels of the trained ``model`` and sandwich-train it into a supernet (in place).

    With ``checkpoint`` set, an existing checkpoint there is resumed (its ranking is reused so the
    sub-networks stay the same), and a new one is written after every epoch (``on_epoch`` is called then).
    ``sample_near``: draw the random sub-networks near these budgets (:class:`SpaceSampler`).
    ``scores``: the channel ranking to use instead of ranking ``model`` (a trained supernet's, when ``model``
    holds its weights: training continues it with the same sub-networks).
    """
    sampler = SpaceSampler(space, near=sample_near)  # checks the range before any work
    if checkpoint is not None and checkpoint.exists():
        from autoprune.models.checkpoint import read_checkpoint

        _, saved = read_checkpoint(checkpoint)
        if "scores" in saved:
            scores = {k: torch.tensor(v) for k, v in saved["scores"].items()}
    supernet = Supernet(model, input_shape, criterion=criterion, calibration=calibration, scores=scores)
    full_meta = {**(meta or {}), "space": space.to_dict(), "sample_near": list(sample_near) if sample_near else None}
    history = train_supernet(
        supernet, sampler, train_loader, config,
        device=device, checkpoint=checkpoint, meta=full_meta, progress=progress, on_epoch=on_epoch,
    )
    return SupernetRun(supernet=supernet, space=space, history=history)
