"""The sub-model sampling pipeline (EagleEye-style): sample -> adaptive-BN score -> finetune the top k.

From a trained model (no supernet training): draw ``samples`` feasible keep-ratio vectors (see
:mod:`autoprune.pipelines.sampling_strategies`), cut each from the original weights, re-estimate its
BatchNorm statistics on a few calibration batches and score it on validation batches (the cached
:class:`~autoprune.evaluate.SupernetEvaluator` over ``Supernet(model)``), finetune the ``top_k`` best
briefly and keep the one with the best validation accuracy after finetuning. The rank correlation between
the cheap score and the finetuned accuracy says whether the cheap score was worth trusting; the same
correlation for the score *without* BN recalibration shows what adaptive BN adds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoprune._registry import Registry
from autoprune.engine.plan import PrunePlan
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, SupernetEvaluator
from autoprune.metrics.accuracy import evaluate_accuracy
from autoprune.pipelines.sampling_strategies import (
    STRATEGIES,
    choice_probabilities,
    draw_candidates,
    importance_damage,
)
from autoprune.search.base import Trial
from autoprune.search.runner import TrialLog
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet
from autoprune.training import TrainConfig, train

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SamplingConfig:
    """Settings of the sampling pipeline.

    Attributes:
        samples: Candidates to draw and score (distinct, feasible).
        top_k: How many of the best-scored candidates to finetune.
        strategy: ``uniform``, ``importance`` or ``sensitivity`` (see ``sampling_strategies``).
        criterion: Channel ranking (which channels a group keeps) and the ``importance`` strategy's scores.
        bn_batches: Calibration batches for adaptive BatchNorm per candidate.
        score_without_bn: Also score every candidate with the dense BN statistics (one more evaluation each).
        temperature: Softness of the importance/sensitivity probabilities (larger: closer to uniform).
        sensitivity_ratios: Keep ratios probed per group by the ``sensitivity`` strategy.
        finetune: Finetuning of each of the top k.
        finetune_batches: Limit each finetuning epoch to this many training batches (None: all).
        include_uniform: Make the uniform network (one keep ratio everywhere, widest within the budget)
            one of the ``samples`` candidates, scored and ranked like the others (it replaces the last
            draw when the draws missed it).
        seed: Seeds the sampling and finetuning.
    """

    samples: int = 50
    top_k: int = 3
    strategy: str = "uniform"
    criterion: str = "l1"
    bn_batches: int = 10
    score_without_bn: bool = True
    temperature: float = 1.0
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01))
    finetune_batches: int | None = None
    include_uniform: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            names: Registry[None] = Registry("sampling strategy")
            for name in STRATEGIES:
                names.register(name, None)
            raise AutoPruneError(names.unknown_message(self.strategy))
        if not isinstance(self.samples, int) or self.samples < 1:
            raise AutoPruneError(f"samples={self.samples!r} must be a positive integer (candidates to score)")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= self.samples:
            raise AutoPruneError(f"top_k={self.top_k!r} must be in [1, samples={self.samples}]: candidates to finetune")
        if self.bn_batches < 0:
            raise AutoPruneError(f"bn_batches={self.bn_batches} must be >= 0 (0 disables adaptive BN)")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise AutoPruneError(f"temperature={self.temperature} must be a positive number")
        if self.finetune_batches is not None and self.finetune_batches < 1:
            raise AutoPruneError(f"finetune_batches={self.finetune_batches} must be >= 1 or None (all)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampledCandidate:
    """One sampled candidate: its adaptive-BN score and, for the top k, its accuracy after finetuning."""

    index: int
    counts: dict[str, int]
    result: EvalResult
    score_without_bn: float | None = None
    finetuned_val_accuracy: float | None = None
    finetune_history: dict[str, list[float]] | None = None
    seconds: float = 0.0
    is_uniform: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "counts": self.counts, "score": self.result.accuracy,
                "macs_ratio": self.result.macs_ratio, "score_without_bn": self.score_without_bn,
                "finetuned_val_accuracy": self.finetuned_val_accuracy, "uniform": self.is_uniform}  # fmt: skip


@dataclass
class SamplingResult:
    """What :func:`run_sampling` returns."""

    candidates: list[SampledCandidate]
    top: list[int]
    best: SampledCandidate
    model: nn.Module
    plan: PrunePlan
    uniform: EvalResult
    correlation: dict[str, Any]
    seconds: dict[str, float]
    sensitivity: Any = None  # a SensitivityTable for the ``sensitivity`` strategy

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary for ``report.json``."""
        return {
            "candidates": len(self.candidates),
            "top_k": [self.candidates[i].to_dict() for i in self.top],
            "best_index": self.best.index,
            "correlation": self.correlation,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 2 points or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None

    def ranks(values: Sequence[float]) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            r[order[i : j + 1]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


class LimitedLoader:
    """At most ``n`` batches of a loader per pass (a subset epoch); sized, so LR schedules see the real length."""

    def __init__(self, loader: Iterable[Batch], n: int | None) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader) if self.n is None else islice(self.loader, self.n)

    def __len__(self) -> int:
        full = len(self.loader)  # type: ignore[arg-type]
        return full if self.n is None else min(full, self.n)


def run_sampling(
    model: nn.Module,
    input_shape: tuple[int, ...],
    space: SearchSpace,
    *,
    train_loader: Iterable[Batch],
    val_batches: Iterable[Batch],
    calibration: Iterable[Batch],
    config: SamplingConfig,
    device: torch.device | str = "cpu",
    out: Path | None = None,
    progress: bool = False,
    on_trial: Callable[[Trial], None] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> SamplingResult:
    """Sample, score with adaptive BN, finetune the top k, return the best (the dense ``model`` is not changed).

    Args:
        model: The trained dense model.
        input_shape: ``(N, C, H, W)`` of the inputs.
        space: Search space and budget; every candidate is feasible in it.
        train_loader: Training batches for finetuning.
        val_batches: Validation batches (from the training split) for scoring and for choosing the best.
        calibration: Calibration batches (adaptive BN, data-driven criteria).
        config: Settings.
        device: Where to score and finetune.
        out: If given, ``trials.jsonl`` / ``trials.csv`` of every scored candidate are written there
            (``info`` holds ``score_without_bn`` and, for the top k, ``finetuned_val_accuracy``).
        progress: Progress bars while finetuning.
        on_trial: Called with every scored candidate as a :class:`Trial` (TensorBoard, progress).
        log: Receives one line per stage.

    Returns:
        The candidates, the finetuned best model and its plan, correlations and timings.
    """
    started = time.perf_counter()
    calib = list(islice(calibration, max(config.bn_batches, 8)))
    base = _copy_to(model, device)
    supernet = Supernet(base, input_shape, criterion=config.criterion, calibration=calib)
    val = list(val_batches)
    evaluator = SupernetEvaluator(supernet, val, calib, bn_batches=config.bn_batches, device=device)
    plain = SupernetEvaluator(supernet, val, calib, bn_batches=0, device=device) if config.score_without_bn else None
    rng = np.random.default_rng(config.seed)
    table = None
    damage = None
    if config.strategy == "importance":
        damage = importance_damage(supernet, space)
    elif config.strategy == "sensitivity":
        from autoprune.analysis.sensitivity import group_damage, measure_sensitivity

        log(f"sensitivity: {len(space.groups)} groups x {len(config.sensitivity_ratios)} keep ratios")
        table = measure_sensitivity(base, input_shape, val, ratios=config.sensitivity_ratios, groups=space.names,
                                    calibration=calib, bn_batches=config.bn_batches, supernet=supernet,
                                    round_to=space.round_to, device=device)  # fmt: skip
        damage = group_damage(table, space, "kl")
    probs = choice_probabilities(space, damage, config.temperature)
    drawn = draw_candidates(space, probs, config.samples, rng)
    uniform_counts = space.uniform(1.0)
    if config.include_uniform and uniform_counts not in drawn:
        drawn = [*drawn[: config.samples - 1], uniform_counts]
    log(f"scoring {len(drawn)} candidates ({config.strategy} sampling, adaptive BN on {config.bn_batches} batches)")
    candidates: list[SampledCandidate] = []
    for i, counts in enumerate(drawn):
        t0 = time.perf_counter()
        result = evaluator.evaluate(counts)
        no_bn = plain.evaluate(counts).accuracy if plain is not None else None
        cand = SampledCandidate(i, result.counts, result, no_bn, seconds=time.perf_counter() - t0,
                                is_uniform=counts == uniform_counts)
        candidates.append(cand)
        if on_trial is not None:
            on_trial(_trial(cand, space, config.strategy))
    scoring_s = time.perf_counter() - started
    uniform = evaluator.evaluate(uniform_counts)
    ranked = sorted(candidates, key=lambda c: (-c.result.accuracy, c.result.macs, c.index))
    top = [c.index for c in ranked[: config.top_k]]
    t_ft = time.perf_counter()
    finetuned: dict[int, nn.Module] = {}
    for rank, i in enumerate(top):
        cand = candidates[i]
        sub = supernet.extract(cand.counts, calibration=calib if config.bn_batches > 0 else None,
                               bn_batches=config.bn_batches).to(device)  # fmt: skip
        torch.manual_seed(config.seed + rank)
        history = train(sub, LimitedLoader(train_loader, config.finetune_batches), config.finetune, val_loader=val,
                        device=device, progress=progress, description=f"finetune {rank + 1}/{len(top)}")  # fmt: skip
        acc = history.val_accuracy[-1] if history.val_accuracy else evaluate_accuracy(sub, val, device=device).top1
        cand.finetuned_val_accuracy, cand.finetune_history = acc, history.to_dict()
        finetuned[i] = sub.eval()
        log(f"candidate {i}: score {cand.result.accuracy:.4f} -> finetuned val accuracy {acc:.4f}")
    finetune_s = time.perf_counter() - t_ft
    best = max((candidates[i] for i in top), key=lambda c: (c.finetuned_val_accuracy or 0.0, -c.result.macs, -c.index))
    if out is not None:
        trial_log = TrialLog(out)
        trial_log.reset()
        for cand in candidates:
            trial_log.append(_trial(cand, space, config.strategy))
    return SamplingResult(
        candidates=candidates, top=top, best=best, model=finetuned[best.index], plan=supernet.plan(best.counts),
        uniform=uniform, correlation=_correlations(candidates, top), sensitivity=table,
        seconds={"scoring": scoring_s, "finetuning": finetune_s, "total": time.perf_counter() - started},
    )  # fmt: skip


def _copy_to(model: nn.Module, device: torch.device | str) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(device).eval()


def _trial(cand: SampledCandidate, space: SearchSpace, strategy: str) -> Trial:
    info: dict[str, Any] = {"strategy": strategy, "score_without_bn": cand.score_without_bn,
                            "uniform": cand.is_uniform}
    if cand.finetuned_val_accuracy is not None:
        info["finetuned_val_accuracy"] = cand.finetuned_val_accuracy
    return Trial(cand.index, cand.counts, "complete", cand.result, cand.seconds, space.feasible(cand.counts), info)


def _correlations(candidates: list[SampledCandidate], top: list[int]) -> dict[str, Any]:
    chosen = [candidates[i] for i in top]
    tuned = [c.finetuned_val_accuracy or 0.0 for c in chosen]
    out: dict[str, Any] = {
        "n_top_k": len(chosen),
        "adaptive_bn_score_vs_finetuned": spearman([c.result.accuracy for c in chosen], tuned),
    }
    if all(c.score_without_bn is not None for c in candidates):
        out["no_bn_score_vs_finetuned"] = spearman([c.score_without_bn or 0.0 for c in chosen], tuned)
        out["adaptive_bn_vs_no_bn_score_all"] = spearman(
            [c.result.accuracy for c in candidates], [c.score_without_bn or 0.0 for c in candidates]
        )
        out["n_all"] = len(candidates)
    return out
