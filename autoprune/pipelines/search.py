"""The search pipeline's second half: search a trained supernet, extract the winner with its shared weights.

``search_supernet`` is the whole search as one function with plain arguments, so it can sit inside a
user's own loop or Optuna objective::

    outcome = search_supernet(supernet, space, splits, searcher="tpe", trials=100, seed=0)
    outcome.model                 # the winner, physically pruned, BN recalibrated, not finetuned
    outcome.choice.statement      # whether it beats the uniform candidate on validation, in words

Scoring uses the validation split carved from the training data. The winner is fixed by
:func:`pick_winner`: the top candidates of the search and the uniform one re-scored on the whole
validation split with a larger BatchNorm calibration (drawn from the training split). Under a latency
budget they are first timed for real, interleaved with the dense model, and those measured over the
target by more than the timing noise are dropped (:func:`check_latency`). The test split is
read once, after the winner is fixed, for the final report: given ``out`` and a
:class:`~autoprune.pipelines.search_report.ReportRequest`, ``search_supernet`` also measures, exports and
reports the winner exactly as ``autoprune search`` does (``outcome.report``; ``OUT/report.json``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from autoprune.data import DataSplits
from autoprune.defaults import DEFAULT_HOLDOUT
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, SupernetEvaluator
from autoprune.pipelines.holdout import holdout_scorer, set_aside
from autoprune.pipelines.latency_winner import check_latency, confirm_latency, eligible_choice
from autoprune.pipelines.search_report import (
    ReportRequest,
    SearchReport,
    jsonable,
    logged_trials,
    write_search_report,
)
from autoprune.search import SearchConfig, SearchResult, Trial, make_searcher, run_search
from autoprune.search.pool import ParallelConfig
from autoprune.search.winner import (
    DEFAULT_TOP_K,
    WinnerChoice,
    choose_winner,
    judge_on_holdout,
)
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
        choice: How the winner was fixed (the re-scored candidates; ``None`` with ``extract=False``).
        report: The test metrics, files and ``report.json`` of a search given a ``report`` request.
    """

    result: SearchResult
    best_counts: dict[str, int] | None
    model: nn.Module | None
    reference: dict[str, dict[str, Any]]
    evaluator: dict[str, Any]
    searcher_state: dict[str, Any] = field(default_factory=dict)
    choice: WinnerChoice | None = None
    report: SearchReport | None = None

    @property
    def best(self) -> Trial | None:
        """The search's own best trial (by its partial score; the winner is :attr:`choice`)."""
        return self.result.best


@dataclass
class Winner:
    """What :func:`pick_winner` returns: the choice, the calibration batches its model is extracted with and,
    under a latency budget, the re-measurement of the top candidates (:func:`check_latency`)."""

    choice: WinnerChoice
    calibration: list[tuple[torch.Tensor, torch.Tensor]]
    latency_check: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.choice.winner.score.counts)

    def extract(self, supernet: Supernet) -> nn.Module:
        """The winner, physically pruned, with BatchNorm re-estimated exactly as it was scored."""
        return supernet.extract(self.counts, calibration=self.calibration, bn_batches=len(self.calibration))


def rescore_calibration(splits: DataSplits, batches: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` calibration batches of 64 from the *training* split, for the final re-scoring.

    The same batches for the same ``seed`` whatever ran before: the order and the train-time augmentation
    are both drawn from ``seed`` (augmentation from a forked global generator, left as it was), so the
    exported model's BatchNorm statistics do not depend on how many trials ran or whether a search resumed.
    """
    if batches < 1:
        raise AutoPruneError(f"rescore_bn_batches={batches} must be >= 1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
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
    dense_model: nn.Module | None = None,
    latency_rounds: int = 15,
    holdout: Dataset[Any] | None = None,
) -> Winner:
    """Fix the winner on validation data: the ``top_k`` best trials and the uniform candidate re-scored.

    Each is scored on the whole validation split after adaptive BN on ``rescore_bn_batches`` batches of
    the training split (more than a search uses per candidate); the best accuracy wins, lower validation
    loss breaks ties. Reads no test data. Under a latency budget (``space.metric == "latency"``) the
    candidates are first timed for real (:func:`check_latency`, ``latency_rounds`` rounds, beside
    ``dense_model`` or the supernet's dense architecture): only those within the target (up to the
    timing noise) are re-scored, and the exported winner is one of them whenever any is.

    With ``holdout`` (validation samples the search never read, :meth:`DataSplits.hold_out`), the winner is
    then judged against the uniform candidate on them (:func:`~autoprune.search.winner.judge_on_holdout`):
    the uniform candidate is exported unless the winner scores above it there (or the uniform candidate was
    measured over the latency target).
    """
    check: dict[str, Any] | None = None
    if space.metric == "latency":
        trials, check, over = check_latency(supernet, space, trials, top_k=top_k, dense_model=dense_model,
                                            rounds=latency_rounds)  # fmt: skip
    calibration = rescore_calibration(splits, rescore_bn_batches, seed)
    scorer = SupernetEvaluator(supernet, splits.val_loader(val_batch_size), calibration,
                               bn_batches=len(calibration), device=device)
    choice = choose_winner(trials, space.uniform(1.0), scorer.score, top_k=top_k)
    if check is not None:
        choice = eligible_choice(choice, over)
        if not trials and check["remeasured"] > 1:
            choice = dataclasses.replace(choice, statement="every re-measured trial was over the latency target: "
                                         "the uniform candidate is exported")  # fmt: skip
        choice, confirmations = confirm_latency(supernet, space, choice, over, dense_model=dense_model,
                                                rounds=2 * latency_rounds)  # fmt: skip
        entry = next(c for c in check["candidates"] if c["counts"] == dict(choice.winner.score.counts))
        final = next((c for c in confirmations if c["counts"] == entry["counts"]), None)
        measured = entry if final is None else final
        check.update(winner_trial=entry["trial"], measured_ratio=measured["measured_ratio"], noise=measured["noise"],
                     first_ratio=entry["measured_ratio"], predicted_ratio=entry["predicted_ratio"],
                     margin=check["target"] - measured["measured_ratio"], confirmations=confirmations,
                     meets_target=entry["eligible"] if final is None else final["eligible"])  # fmt: skip
    if holdout is not None:
        judge = holdout_scorer(supernet, holdout, calibration, val_batch_size=val_batch_size, device=device)
        uniform_over = check is not None and dict(choice.uniform.score.counts) in over
        choice = judge_on_holdout(choice, judge, keep_anyway="the uniform candidate was measured over the "
                                  "latency target" if uniform_over else None)  # fmt: skip
        if check is not None and choice.holdout is not None and not choice.holdout.kept:
            entry = next(c for c in check["candidates"] if c["source"] == "uniform")  # timed in the first run
            check.update(winner_trial=None, measured_ratio=entry["measured_ratio"], noise=entry["noise"],
                         first_ratio=entry["measured_ratio"], predicted_ratio=entry["predicted_ratio"],
                         margin=check["target"] - entry["measured_ratio"], meets_target=entry["eligible"])
    return Winner(choice, calibration, check)


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
    report: ReportRequest | None = None,
    parallel: ParallelConfig | None = None,
    holdout: float | Dataset[Any] | None = DEFAULT_HOLDOUT,
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
        extract: Fix and extract the winner (``model``, ``choice``); False in the extra worker processes
            of one search (the process that reports fixes the winner from the log they share).
        top_k: Best trials re-scored at full fidelity to fix the winner (see :func:`pick_winner`).
        rescore_bn_batches: Calibration batches of that re-scoring (default: 4 x ``bn_batches``).
        report: End as ``autoprune search`` does (needs ``out``): fix the winner over every trial of the
            run folder's log, then measure it on the test split beside the dense model and the uniform
            candidate, export it, and write ``report.json`` (see :mod:`autoprune.pipelines.search_report`).
            Nothing of this happens when the search was interrupted.
        parallel: Evaluate up to ``parallel.workers`` candidates at once in worker processes (searchers that
            ask ahead: RL agents, random); see :func:`autoprune.search.run_search`. Its factory must set the
            same ``holdout`` aside.
        holdout: Fraction of the validation split set aside before the search (:meth:`DataSplits.hold_out`):
            the search and the re-scoring read the rest, and the winner is exported only if it scores above
            the uniform candidate on this part (:func:`pick_winner`). Or the part itself, already set aside
            by the caller (``splits.val`` must not contain it; ``autoprune search`` does this before cutting
            validation to ``--val-batches``). 0 or None: no hold-out, the winner of the re-scoring is exported.

    Raises:
        AutoPruneError: unknown searcher or option, bad trial count or rungs; ``report`` without ``out``;
            with ``report``, no trial completed.
    """
    if report is not None and out is None:
        raise AutoPruneError("search_supernet(report=...) needs out=: the run folder it exports and reports to")
    config = SearchConfig(trials=trials, rungs=rungs, seed=seed)
    theirs = getattr(parallel.factory, "holdout", None) if parallel is not None else None
    if isinstance(holdout, (int, float)) and theirs is not None and float(theirs) != float(holdout):
        raise AutoPruneError(f"parallel.factory.holdout={theirs} but holdout={holdout}: the worker processes would "
                             "score candidates on other validation samples; give both the same hold-out")
    splits, held = set_aside(splits, holdout)
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
                        repair_log=repair_log, parallel=parallel)
    outcome = SupernetSearch(result=result, best_counts=None, model=None, reference=reference,
                             evaluator=evaluator.stats.to_dict(), searcher_state=engine.state())
    if report is not None and out is not None and not result.interrupted:
        if report.before_winner is not None:
            report.before_winner()
        done = logged_trials(out)  # every process's trials: workers share the log
    elif extract and report is None:
        done = result.trials
    else:
        return outcome
    rescore = 4 * max(bn_batches, 1) if rescore_bn_batches is None else rescore_bn_batches
    winner = pick_winner(supernet, space, splits, done, top_k=top_k, seed=seed, device=device,
                         rescore_bn_batches=rescore, val_batch_size=val_batch_size,
                         dense_model=None if report is None else report.dense_model, holdout=held)
    outcome.choice, outcome.best_counts = winner.choice, winner.counts
    outcome.model = winner.extract(supernet).to(evaluator.device)
    if report is not None and out is not None:
        settings = {"searcher": searcher, "trials": trials, "rungs": 1 if rungs is None else len(rungs),
                    "options": jsonable(options or {}), "workers": 1 if parallel is None else parallel.workers,
                    "bn_batches": bn_batches,
                    "val_batch_size": val_batch_size, "top_k": top_k, "rescore_bn_batches": len(winner.calibration),
                    "holdout": holdout if isinstance(holdout, (int, float)) else None,
                    "holdout_samples": 0 if held is None else len(held),  # type: ignore[arg-type]
                    "latency_form": latency_form, "supernet": None, "device": str(device), "checkpoint": None}
        outcome.report = write_search_report(supernet, space, splits, outcome, winner, done, out, report,
                                             config=settings, seed=seed, device=device, progress=progress)
    return outcome


def _ref(result: EvalResult) -> dict[str, Any]:
    return {
        "val_accuracy": result.accuracy,
        "macs_ratio": result.macs_ratio,
        "counts": result.counts,
    }
