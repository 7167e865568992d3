"""The standard pipeline: (trained model) -> prune to a target -> finetune, optionally in k rounds.

Gradual pruning follows a geometric schedule: round ``i`` of ``k`` keeps ``target ** (i / k)`` of the
dense budget, finetuning after each round. The final plan always refers to the base model, so it can be
re-applied to a fresh copy of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoprune._types import Batch
from autoprune.engine.plan import STRUCTURED, PrunePlan, apply_plan
from autoprune.engine.pruner import PruneConfig, compose_plans
from autoprune.errors import AutoPruneError
from autoprune.metrics import evaluate_accuracy
from autoprune.pipelines.prune import compute_plan
from autoprune.training import TrainConfig, train


@dataclass(frozen=True)
class StandardConfig:
    """Settings of the standard prune-then-finetune pipeline.

    Attributes:
        prune: Budget, criterion, granularity and scope.
        finetune: Finetuning per round (``epochs=0`` disables it).
        rounds: Number of prune+finetune rounds (gradual pruning when > 1).
    """

    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, lr=0.01))
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise AutoPruneError(f"rounds={self.rounds} must be >= 1")
        if self.rounds > 1 and self.prune.keep_ratios is not None:
            raise AutoPruneError("gradual pruning (rounds > 1) needs a target ratio, not per-group keep_ratios")

    def to_dict(self) -> dict[str, Any]:
        return {"prune": self.prune.to_dict(), "finetune": self.finetune.to_dict(), "rounds": self.rounds}


@dataclass
class RoundResult:
    """What one round did (accuracies on the validation split)."""

    target: float | None  # None: explicit per-group keep ratios (no budget)
    val_accuracy_after_prune: float
    val_accuracy_after_finetune: float | None


@dataclass
class StandardResult:
    """Output of :func:`run_standard`."""

    model: nn.Module
    plan: PrunePlan
    rounds: list[RoundResult]


def _round_config(config: PruneConfig, target: float, current_fraction: float) -> PruneConfig:
    """Config for one round, its target relative to the (already pruned) current model."""
    relative = min(1.0, target / current_fraction)
    if config.target_params is not None:
        return dataclasses.replace(config, target_params=relative)
    return dataclasses.replace(config, target_macs=relative)


def run_standard(
    model: nn.Module,
    input_shape: tuple[int, ...],
    config: StandardConfig,
    *,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch],
    calibration: Iterable[Batch] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
) -> StandardResult:
    """Prune ``model`` (not modified) to the budget and finetune; returns the pruned model and plan.

    Masked granularities finetune with masks frozen: masked weights and their gradients stay exactly
    zero. Structured ones finetune the physically smaller model.
    """
    base_cost = config.prune.target_params if config.prune.target_params is not None else config.prune.target_macs
    rounds: list[RoundResult] = []
    current = model
    plan: PrunePlan | None = None
    fraction = 1.0
    for i in range(1, config.rounds + 1):
        target: float | None
        if config.prune.keep_ratios is not None:
            round_prune = config.prune
            target = None  # explicit per-group ratios: no budget
        else:
            assert base_cost is not None
            target = base_cost ** (i / config.rounds)
            round_prune = _round_config(config.prune, target, fraction)
        step_plan = compute_plan(current, input_shape, round_prune, calibration=calibration)
        plan = step_plan if plan is None else compose_plans(plan, step_plan)
        current = apply_plan(current, step_plan)  # keeps the weights finetuned in earlier rounds
        current.to(device)
        after_prune = evaluate_accuracy(current, val_loader, device=device).top1
        asked = "explicit keep ratios" if target is None else f"target {target:.3f}"
        log(f"round {i}/{config.rounds}: {asked}, val accuracy after pruning {after_prune:.4f}")
        after_ft = None
        if config.finetune.epochs > 0:
            masks = plan.masks if plan.granularity != STRUCTURED else None
            train(
                current,
                train_loader,
                config.finetune,
                device=device,
                masks=masks,
                progress=progress,
                description=f"finetune {i}/{config.rounds}",
            )
            after_ft = evaluate_accuracy(current, val_loader, device=device).top1
            log(f"round {i}/{config.rounds}: val accuracy after finetuning {after_ft:.4f}")
        rounds.append(RoundResult(target, after_prune, after_ft))
        fraction = 1.0 if target is None else target
    assert plan is not None
    return StandardResult(model=current, plan=plan, rounds=rounds)
