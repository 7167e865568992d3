"""The sub-model sampling pipeline (EagleEye-style): sample -> adaptive-BN score -> finetune the top k.

From a trained model (no supernet training): the ``sampling`` searcher draws ``samples`` feasible keep-ratio
vectors (weighted by :mod:`autoprune.pipelines.sampling_strategies`) and :func:`~autoprune.search.run_search`
scores them like any search (trial log, resume, failed evaluations): each is cut from the original weights,
its BatchNorm statistics re-estimated on a few calibration batches and scored on validation batches (the
cached :class:`~autoprune.evaluate.SupernetEvaluator` over ``Supernet(model)``). This module finetunes the
``top_k`` best briefly and keeps the one with the best validation accuracy after finetuning. The rank
correlation between the cheap score and the finetuned accuracy says whether the cheap score was worth
trusting; the same correlation for the score *without* BN recalibration shows what adaptive BN adds.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
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
from autoprune._types import Batch
from autoprune.engine.plan import PrunePlan
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, SupernetEvaluator
from autoprune.metrics.accuracy import evaluate_accuracy
from autoprune.pipelines.sampling_strategies import STRATEGIES, importance_damage
from autoprune.search import SearchConfig, Trial, TrialLog, make_searcher, run_search
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet
from autoprune.training import TrainConfig, train

#: The folder under ``out`` that keeps finished finetunings until the run returns (what a resume reads back).
PARTIAL_DIR = "partial"


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
        final_epochs: Then finetune the chosen best this many more epochs on the whole training set (EagleEye's
            final finetuning, with ``finetune``'s settings); 0 exports it as the top-k finetuning left it. With
            ``top_k`` large and ``finetune_batches`` small, the top-k finetuning is a screening of every
            candidate by a short finetune and this the real finetuning of the one it chose.
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
    final_epochs: int = 0
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
        if not isinstance(self.final_epochs, int) or self.final_epochs < 0:
            raise AutoPruneError(f"final_epochs={self.final_epochs!r} must be an integer >= 0 (0: no final finetuning)")
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
    final_val_accuracy: float | None = None  # after ``final_epochs`` more epochs of the best (None: none)
    final_history: dict[str, list[float]] | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary for ``report.json``."""
        return {
            "candidates": len(self.candidates),
            "top_k": [self.candidates[i].to_dict() for i in self.top],
            "best_index": self.best.index,
            "correlation": self.correlation,
            "final_val_accuracy": self.final_val_accuracy,
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
    resume: bool = False,
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
        resume: Continue the run recorded in ``out``: the same draws, scored candidates are not scored again,
            finetuned ones are read back from ``out/partial`` (written after each finetuning, removed when the
            run returns; with a seeded ``DataLoader`` the rest see the batches an uninterrupted run would) and
            the final finetuning continues after its last finished epoch.
        progress: Progress bars while finetuning.
        on_trial: Called with every scored candidate as a :class:`Trial` (TensorBoard, progress).
        log: Receives one line per stage.

    Returns:
        The candidates, the finetuned best model and its plan, correlations and timings.

    Raises:
        AutoPruneError: every sampled candidate failed to evaluate.
    """
    started = time.perf_counter()
    calib = list(islice(calibration, max(config.bn_batches, 8)))
    base = _copy_to(model, device)
    supernet = Supernet(base, input_shape, criterion=config.criterion, calibration=calib)
    val = list(val_batches)
    evaluator = SupernetEvaluator(supernet, val, calib, bn_batches=config.bn_batches, device=device)
    plain = SupernetEvaluator(supernet, val, calib, bn_batches=0, device=device) if config.score_without_bn else None
    table = None
    damage = None
    if config.strategy == "importance":
        damage = importance_damage(supernet, space)
    elif config.strategy == "sensitivity":
        from autoprune.analysis.sensitivity import group_damage, measure_sensitivity

        log(f"sensitivity: {len(space.groups)} groups x {len(config.sensitivity_ratios)} keep ratios")
        table = measure_sensitivity(base, input_shape, val, ratios=config.sensitivity_ratios, groups=space.names,
                                    calibration=calib, bn_batches=config.bn_batches, supernet=supernet,
                                    round_to=space.rounding, device=device)  # fmt: skip
        damage = group_damage(table, space, "kl")
    uniform_counts = space.uniform(1.0)
    searcher = make_searcher("sampling", space, seed=config.seed, damage=damage, temperature=config.temperature,
                             include_uniform=config.include_uniform)  # fmt: skip
    log(f"scoring {config.samples} candidates ({config.strategy} sampling, adaptive BN on {config.bn_batches} batches)")
    no_bn: dict[int, float] = {}

    def scored(trial: Trial) -> None:
        if plain is not None and trial.result is not None:
            no_bn[trial.number] = plain.evaluate(trial.counts).accuracy
        if on_trial is not None:
            on_trial(_with_info(trial, config.strategy, no_bn.get(trial.number)))

    search = run_search(searcher, evaluator, SearchConfig(trials=config.samples, seed=config.seed), out=out,
                        resume=resume, progress=False, on_trial=scored)  # fmt: skip
    for t in search.trials[: search.resumed_trials]:  # scored by an earlier run
        if plain is not None and t.result is not None:
            no_bn[t.number] = plain.evaluate(t.counts).accuracy
    candidates = [
        SampledCandidate(t.number, t.result.counts, t.result, no_bn.get(t.number), seconds=t.seconds,
                         is_uniform=bool(t.info.get("uniform")))
        for t in search.trials if t.state == "complete" and t.result is not None
    ]  # fmt: skip
    if not candidates:
        raise AutoPruneError(f"all {len(search.trials)} sampled candidates failed to evaluate; see trials.jsonl")
    scoring_s = time.perf_counter() - started
    uniform = evaluator.evaluate(uniform_counts)
    ranked = sorted(candidates, key=lambda c: (-c.result.accuracy, c.result.macs, c.index))
    top = [c.index for c in ranked[: config.top_k]]
    by_index = {c.index: c for c in candidates}
    t_ft = time.perf_counter()
    partial = None if out is None else out / PARTIAL_DIR
    if partial is not None and not resume:
        shutil.rmtree(partial, ignore_errors=True)  # an earlier run's finetunings are not this run's
    finetuned: dict[int, nn.Module] = {}
    for rank, i in enumerate(top):
        cand = by_index[i]
        sub = supernet.extract(cand.counts, calibration=calib if config.bn_batches > 0 else None,
                               bn_batches=config.bn_batches).to(device)  # fmt: skip
        saved = None if partial is None else partial / f"candidate-{i}.pt"
        if saved is not None and saved.is_file():
            cand.finetuned_val_accuracy, cand.finetune_history = _restore_finetuned(sub, saved, cand, train_loader)
            finetuned[i] = sub.eval()
            log(f"candidate {i}: finetuned val accuracy {cand.finetuned_val_accuracy:.4f} (finished earlier)")
            continue
        torch.manual_seed(config.seed + rank)
        history = train(sub, LimitedLoader(train_loader, config.finetune_batches), config.finetune, val_loader=val,
                        device=device, progress=progress, description=f"finetune {rank + 1}/{len(top)}")  # fmt: skip
        acc = history.val_accuracy[-1] if history.val_accuracy else evaluate_accuracy(sub, val, device=device).top1
        cand.finetuned_val_accuracy, cand.finetune_history = acc, history.to_dict()
        finetuned[i] = sub.eval()
        if saved is not None:
            _save_finetuned(sub, saved, cand, train_loader)
        log(f"candidate {i}: score {cand.result.accuracy:.4f} -> finetuned val accuracy {acc:.4f}")
    finetune_s = time.perf_counter() - t_ft
    best = max((by_index[i] for i in top), key=lambda c: (c.finetuned_val_accuracy or 0.0, -c.result.macs, -c.index))
    final_val, final_history, t_final = None, None, time.perf_counter()
    if config.final_epochs > 0:  # the real finetuning of the one candidate chosen
        log(f"candidate {best.index}: {config.final_epochs} more finetuning epochs on the whole training set")
        torch.manual_seed(config.seed + len(top))
        more = dataclasses.replace(config.finetune, epochs=config.final_epochs)
        final = train(finetuned[best.index], train_loader, more, val_loader=val, device=device, progress=progress,
                      description="finetune the best", checkpoint=None if partial is None else partial / "final.pt")
        final_val, final_history = final.val_accuracy[-1], final.to_dict()
        finetuned[best.index].eval()
        log(f"candidate {best.index}: val accuracy {best.finetuned_val_accuracy:.4f} -> {final_val:.4f}")
    if out is not None:  # the log again, its trials' info now with the no-BN scores and the finetuned accuracies
        trial_log = TrialLog(out)
        trial_log.reset()
        for trial in search.trials:
            done = by_index.get(trial.number)
            tuned = None if done is None else done.finetuned_val_accuracy
            trial_log.append(_with_info(trial, config.strategy, no_bn.get(trial.number), tuned))
    if partial is not None:  # finished: nothing is left to resume
        shutil.rmtree(partial, ignore_errors=True)
    return SamplingResult(
        candidates=candidates, top=top, best=best, model=finetuned[best.index], plan=supernet.plan(best.counts),
        uniform=uniform, correlation=_correlations(candidates, top), sensitivity=table,
        final_val_accuracy=final_val, final_history=final_history,
        seconds={"scoring": scoring_s, "finetuning": finetune_s, "final_finetuning": time.perf_counter() - t_final,
                 "total": time.perf_counter() - started},
    )  # fmt: skip


def _save_finetuned(sub: nn.Module, path: Path, cand: SampledCandidate, loader: Iterable[Batch]) -> None:
    """Keep a finished top-k finetuning (weights, accuracy, history, the loader's shuffling state) for a resume."""
    gen = getattr(loader, "generator", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"counts": dict(cand.counts), "model": sub.state_dict(), "val_accuracy": cand.finetuned_val_accuracy,
                "history": cand.finetune_history,
                "generator": gen.get_state() if isinstance(gen, torch.Generator) else None}, tmp)  # fmt: skip
    tmp.replace(path)  # never a half-written file


def _restore_finetuned(sub: nn.Module, path: Path, cand: SampledCandidate,
                       loader: Iterable[Batch]) -> tuple[float, dict[str, list[float]]]:  # fmt: skip
    """Load a finetuning kept by :func:`_save_finetuned` into ``sub``; its accuracy and history."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if dict(state["counts"]) != dict(cand.counts):
        raise AutoPruneError(f"{path} holds another candidate's finetuning, not candidate {cand.index}'s: the run "
                             "changed since it was kept; start it again with --overwrite")
    sub.load_state_dict(state["model"])
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator) and state["generator"] is not None:
        gen.set_state(state["generator"])
    return float(state["val_accuracy"]), dict(state["history"])


def _copy_to(model: nn.Module, device: torch.device | str) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(device).eval()


def _with_info(trial: Trial, strategy: str, score_without_bn: float | None, tuned: float | None = None) -> Trial:
    info: dict[str, Any] = {**trial.info, "strategy": strategy, "score_without_bn": score_without_bn,
                            "uniform": bool(trial.info.get("uniform"))}  # fmt: skip
    if tuned is not None:
        info["finetuned_val_accuracy"] = tuned
    return dataclasses.replace(trial, info=info)


def _correlations(candidates: list[SampledCandidate], top: list[int]) -> dict[str, Any]:
    by_index = {c.index: c for c in candidates}
    chosen = [by_index[i] for i in top]
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
