"""The search pipeline's second half: search a trained supernet, extract the winner with its shared weights.

``search_supernet`` is the whole search as one function with plain arguments, so it can sit inside a
user's own loop or Optuna objective::

    outcome = search_supernet(supernet, space, splits, searcher="tpe", trials=100, seed=0)
    outcome.model                 # the winner, physically pruned, BN recalibrated, not finetuned
    outcome.choice.statement      # whether it beats the uniform candidate on validation, in words

Scoring uses the validation split carved from the training data. The winner is fixed by
:func:`pick_winner`: the top candidates of the search and the uniform one re-scored on the whole
validation split with a larger BatchNorm calibration (drawn from the training split). The test split is
left to the caller's final report, read once, after the winner is fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.data import DataSplits
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, SupernetEvaluator
from autoprune.search import SearchConfig, SearchResult, Trial, make_searcher, run_search
from autoprune.search.winner import DEFAULT_TOP_K, WinnerChoice, choose_winner
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet


@dataclass
class SupernetSearch:
    """What :func:`search_supernet` returns.

    Attributes:
        result: The trials, the search's own best trial and the Pareto front.
        best_counts: Kept channels per group of the winner (every group of the model); None with
            ``extract=False``.
        model: The winner extracted with the shared weights and adaptive BN on the re-scoring calibration
            (``None`` with ``extract=False``).
        reference: Evaluations of the uniform-ratio candidate at the budget and of the largest candidate
            (same evaluator, full fidelity), the baselines a search should beat.
        evaluator: Counters of the evaluator (calls, cache hits, batches computed).
        searcher_state: The searcher's own summary (``Searcher.state()``).
    """

    result: SearchResult
    best_counts: dict[str, int] | None
    model: nn.Module | None
    reference: dict[str, dict[str, Any]]
    evaluator: dict[str, Any]
    searcher_state: dict[str, Any] = field(default_factory=dict)
    choice: WinnerChoice | None = None

    @property
    def best(self) -> Trial | None:
        """The search's own best trial (by its partial score; the winner is :attr:`choice`)."""
        return self.result.best


@dataclass
class Winner:
    """What :func:`pick_winner` returns: the choice, and the calibration batches its model is extracted with."""

    choice: WinnerChoice
    calibration: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.choice.winner.score.counts)

    def extract(self, supernet: Supernet) -> nn.Module:
        """The winner, physically pruned, with BatchNorm re-estimated exactly as it was scored."""
        return supernet.extract(self.counts, calibration=self.calibration, bn_batches=len(self.calibration))


def rescore_calibration(splits: DataSplits, batches: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` calibration batches of 64 from the *training* split (seeded), for the final re-scoring."""
    if batches < 1:
        raise AutoPruneError(f"rescore_bn_batches={batches} must be >= 1")
    loader = splits.train_loader(64, seed=seed + 1)
    return [(x, y) for (x, y), _ in zip(loader, range(batches), strict=False)]


def pick_winner(
    supernet: Supernet,
    space: SearchSpace,
    splits: DataSplits,
    trials: list[Trial],
    *,
    top_k: int = DEFAULT_TOP_K,
    rescore_bn_batches: int = 40,
    val_batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Winner:
    """Fix the winner on validation data: the ``top_k`` best trials and the uniform candidate re-scored.

    Each is scored on the whole validation split after adaptive BN on ``rescore_bn_batches`` batches of
    the training split (more than a search uses per candidate); the best accuracy wins, lower validation
    loss breaks ties. Reads no test data.
    """
    calibration = rescore_calibration(splits, rescore_bn_batches, seed)
    scorer = SupernetEvaluator(supernet, splits.val_loader(val_batch_size), calibration,
                               bn_batches=len(calibration), device=device)
    choice = choose_winner(trials, space.uniform(1.0), scorer.score, top_k=top_k)
    return Winner(choice, calibration)


def search_supernet(
    supernet: Supernet,
    space: SearchSpace,
    splits: DataSplits,
    *,
    searcher: str = "random",
    trials: int = 50,
    seed: int = 0,
    rungs: tuple[int, ...] | None = None,
    bn_batches: int = 10,
    val_batch_size: int = 256,
    options: Mapping[str, Any] | None = None,
    out: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_trial: Callable[[Trial], None] | None = None,
    latency_batch_size: int | None = None,
    latency_form: str = "eager",
    device: torch.device | str = "cpu",
    repair_log: bool = True,
    extract: bool = True,
    top_k: int = DEFAULT_TOP_K,
    rescore_bn_batches: int | None = None,
) -> SupernetSearch:
    """Search ``space`` over a trained ``supernet`` and extract the best sub-network.

    Args:
        supernet: A trained supernet (see :func:`autoprune.pipelines.oneshot.build_supernet`).
        space: The search space and budget; every candidate evaluated meets it.
        splits: Data; scoring uses ``splits.val_loader`` and adaptive BN ``splits.calibration_loader``.
        searcher: A registered searcher name (``autoprune.search.SEARCHERS.names()``).
        trials: Number of trials (candidate evaluations).
        seed: Seed of the searcher and the calibration batches.
        rungs: Validation-batch counts for early stopping (see :class:`SearchConfig`); None: full only.
        bn_batches: Calibration batches of adaptive BN per candidate.
        val_batch_size: Validation batch size (one fidelity unit).
        options: Searcher-specific keyword options (e.g. ``{"pruner": "median"}`` for Optuna searchers).
        out: Run folder for ``trials.jsonl`` / ``trials.csv`` (and the searcher's own files).
        resume: Continue the trials recorded in ``out``.
        progress: Progress bar.
        on_trial: Called after each trial.
        latency_batch_size: Measure every candidate's latency at this batch size (latency rewards).
        latency_form: ``eager`` or ``deploy`` (BatchNorm folded, channels-last): the form latency is measured in.
        device: Where to evaluate.
        repair_log: See :func:`autoprune.search.run_search` (False in processes that share ``out``).
        extract: Fix and extract the winner (``model``, ``choice``); False when the caller picks the winner
            itself (workers share one log).
        top_k: Best trials re-scored at full fidelity to fix the winner (see :func:`pick_winner`).
        rescore_bn_batches: Calibration batches of that re-scoring (default: 4 x ``bn_batches``).

    Raises:
        AutoPruneError: unknown searcher or option, bad trial count or rungs.
    """
    config = SearchConfig(trials=trials, rungs=rungs, seed=seed)
    evaluator = SupernetEvaluator(
        supernet, splits.val_loader(val_batch_size), splits.calibration_loader(seed=seed),
        bn_batches=bn_batches, latency_batch_size=latency_batch_size, latency_form=latency_form, device=device,
    )  # fmt: skip
    reference = {
        "uniform": _ref(evaluator.evaluate(space.uniform(1.0))),
        "largest": _ref(evaluator.evaluate(space.largest())),
    }
    engine = make_searcher(searcher, space, seed=seed, **dict(options or {}))  # checks the options
    result = run_search(engine, evaluator, config, out=out, resume=resume, progress=progress, on_trial=on_trial,
                        repair_log=repair_log)
    best_counts, model, choice = None, None, None
    if extract:
        winner = pick_winner(
            supernet, space, splits, result.trials, top_k=top_k, seed=seed, device=device,
            rescore_bn_batches=4 * max(bn_batches, 1) if rescore_bn_batches is None else rescore_bn_batches,
            val_batch_size=val_batch_size,
        )  # fmt: skip
        choice, best_counts = winner.choice, winner.counts
        model = winner.extract(supernet).to(evaluator.device)
    return SupernetSearch(
        result=result, best_counts=best_counts, model=model, reference=reference,
        evaluator=evaluator.stats.to_dict(), searcher_state=engine.state(), choice=choice,
    )  # fmt: skip


def _ref(result: EvalResult) -> dict[str, Any]:
    return {
        "val_accuracy": result.accuracy,
        "macs_ratio": result.macs_ratio,
        "counts": result.counts,
    }
