"""The search pipeline's second half: search a trained supernet, extract the winner with its shared weights.

``search_supernet`` is the whole search as one function with plain arguments, so it can sit inside a
user's own loop or Optuna objective::

    outcome = search_supernet(supernet, space, splits, searcher="tpe", trials=100, seed=0)
    outcome.model                 # the best sub-network, physically pruned, BN recalibrated, not finetuned
    outcome.best.result.accuracy  # its validation accuracy (the test split is not touched here)

Scoring uses the validation split carved from the training data; the test split is left to the caller's
final report, read once.
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
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet


@dataclass
class SupernetSearch:
    """What :func:`search_supernet` returns.

    Attributes:
        result: The trials, the best trial and the Pareto front.
        best_counts: Kept channels per group of the winner (every group of the model).
        model: The winner extracted with the shared weights and adaptive BN (``None`` if no trial completed
            or ``extract=False``).
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

    @property
    def best(self) -> Trial | None:
        return self.result.best


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
        extract: Extract the winner (``model``); False when the caller picks the winner itself (workers).

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
    try:
        engine = make_searcher(searcher, space, seed=seed, **dict(options or {}))
    except TypeError as exc:  # an option this searcher does not take
        raise AutoPruneError(f"searcher {searcher!r} does not accept these options ({exc}); see its docs") from None
    result = run_search(engine, evaluator, config, out=out, resume=resume, progress=progress, on_trial=on_trial,
                        repair_log=repair_log)
    best = result.best
    best_counts = None if best is None or best.result is None else dict(best.result.counts)
    model = None
    if best_counts is not None and extract:
        model = evaluator.supernet.extract(
            best_counts, calibration=evaluator.calibration or None, bn_batches=bn_batches
        ).to(evaluator.device)
    return SupernetSearch(
        result=result, best_counts=best_counts, model=model, reference=reference,
        evaluator=evaluator.stats.to_dict(), searcher_state=engine.state(),
    )  # fmt: skip


def _ref(result: EvalResult) -> dict[str, Any]:
    return {
        "val_accuracy": result.accuracy,
        "macs_ratio": result.macs_ratio,
        "counts": result.counts,
    }
