"""The search loop shared by every searcher: ask -> evaluate (rung by rung) -> tell, recorded as it goes.

Every finished trial is appended at once to the run folder's :class:`~autoprune.search.trial_log.TrialLog`
(``trials.jsonl``, the resume log, and ``trials.csv``), so progress survives a crash. Rerunning with
``resume=True`` reads ``trials.jsonl`` back, lets the searcher :meth:`~Searcher.restore` from it and
continues the count; finished evaluations are never repeated (their results are memoized by candidate).

A trial is written to the log before the searcher is told about it: the log is the record of what finished.
A process killed between the two leaves a trial the searcher's own store (an Optuna study) still holds as
running; the resume tells it the logged result (:meth:`Searcher.restore`) instead of losing or repeating it.

With ``parallel`` (:class:`~autoprune.search.pool.ParallelConfig`, ``--workers N``) a searcher that asks ahead
(RL agents, random search) keeps up to N candidates in evaluation at once in a pool of worker processes
(:mod:`autoprune.search.pool`). Results are logged and told in the order the candidates were proposed, and a
new one is asked for after each tell, so the proposals depend on the seed and the results only, never on
which worker finished first. A search killed meanwhile resumes from the log like any other: the candidates
that were in flight are simply proposed again.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, Evaluator
from autoprune.search.base import Searcher, Trial
from autoprune.search.pool import (
    AskAhead,
    EvaluatorPool,
    Key,
    ParallelConfig,
    candidate_key,
    check_asks_ahead,
    check_feasible,
    evaluate_candidate,
    outcome_trial,
)
from autoprune.search.trial_log import TrialLog as TrialLog  # the log's own module; re-exported here


@dataclass(frozen=True)
class SearchConfig:
    """How long and how finely to search.

    Attributes:
        trials: Total number of trials (candidate evaluations, pruned and failed ones included). A resumed
            search counts the trials of earlier runs toward it.
        rungs: Validation-batch counts at which a trial is scored before going on (ascending; the last is
            the full fidelity). ``None``: full fidelity only. :func:`fidelity_rungs` makes a geometric ladder.
        seed: Recorded in the report; searchers take theirs at construction.
    """

    trials: int = 50
    rungs: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.trials, int) or self.trials < 1:
            raise AutoPruneError(f"trials={self.trials!r} must be a positive integer (candidate evaluations)")
        if self.rungs is not None:
            rungs = tuple(int(r) for r in self.rungs)
            if not rungs or any(r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
                raise AutoPruneError(f"rungs={self.rungs!r} must be ascending, distinct, positive batch counts")
            object.__setattr__(self, "rungs", rungs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fidelity_rungs(max_fidelity: int, n_rungs: int = 3, min_fidelity: int = 1) -> tuple[int, ...]:
    """A geometric ladder of validation-batch counts ending at ``max_fidelity`` (e.g. 24 -> (6, 12, 24))."""
    if n_rungs < 1:
        raise AutoPruneError(f"n_rungs={n_rungs} must be >= 1")
    rungs = {max(min_fidelity, math.ceil(max_fidelity / 2**i)) for i in range(n_rungs)}
    return tuple(sorted(r for r in rungs if r <= max_fidelity))


@dataclass
class SearchResult:
    """What :func:`run_search` returns."""

    searcher: str
    trials: list[Trial]
    best: Trial | None
    pareto: list[Trial]
    wall_time_s: float
    resumed_trials: int
    evaluations: int
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and the best trial, for ``report.json``."""
        states = {s: sum(t.state == s for t in self.trials) for s in ("complete", "pruned", "failed")}
        return {
            "searcher": self.searcher,
            "trials": len(self.trials),
            "states": states,
            "resumed_trials": self.resumed_trials,
            "evaluations": self.evaluations,
            "wall_time_s": round(self.wall_time_s, 3),
            "interrupted": self.interrupted,
            "best": None if self.best is None else self.best.to_dict(),
            "pareto": [t.to_dict() for t in self.pareto],
        }


def run_search(
    searcher: Searcher,
    evaluator: Evaluator,
    config: SearchConfig,
    *,
    out: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_trial: Callable[[Trial], None] | None = None,
    repair_log: bool = True,
    parallel: ParallelConfig | None = None,
) -> SearchResult:
    """Drive ``searcher`` over ``evaluator`` for ``config.trials`` trials.

    Args:
        searcher: Proposes candidates (:class:`Searcher`).
        evaluator: Scores them (:class:`~autoprune.evaluate.Evaluator`); the only thing that runs data.
        config: Trial budget and fidelity rungs.
        out: Run folder for ``trials.jsonl`` / ``trials.csv`` (nothing is written when None).
        resume: Continue the trials recorded in ``out`` instead of starting over.
        progress: Show a progress bar with the best accuracy so far.
        on_trial: Called after every finished trial (reports, TensorBoard, tests).
        repair_log: When resuming, cut a torn last line off the log first (set False in worker processes
            that share the log with others; repair it before they start, see :meth:`TrialLog.repair`).
        parallel: Evaluate up to ``parallel.workers`` candidates at once in worker processes whose evaluators
            ``parallel.factory`` builds (equivalent to ``evaluator``, which then only sets the rungs); only for
            searchers that ask ahead (``asks_ahead``). Trials are still logged and told in proposal order.

    Returns:
        The trials of this search (earlier runs' included when resuming), the best and the Pareto front.

    Raises:
        AutoPruneError: bad rungs, a corrupt trial log when resuming, ``parallel`` with a searcher that cannot
            ask ahead, or a worker process that could not start or died.
        RuntimeError: a searcher proposed a candidate outside its space (a bug in that searcher).
    """
    start = time.perf_counter()
    workers = 1 if parallel is None else parallel.workers
    if workers > 1:
        check_asks_ahead(searcher, workers)
    rungs = _rungs(config, evaluator.max_fidelity)
    log = TrialLog(out) if out is not None else None
    previous: list[Trial] = []
    if log is not None:
        if resume:
            if repair_log:
                log.repair()
            previous = log.read()
        else:
            log.reset()
    if previous:
        searcher.restore(previous)
    memo: dict[Key, EvalResult] = {
        candidate_key(t.counts): t.result for t in previous if t.state == "complete" and t.result is not None
    }
    trials = list(previous)
    evaluations = 0
    searcher.plan_budget(config.trials - len(previous))
    bar = _Progress(config.trials, len(previous), searcher, enabled=progress)
    stop = _StopOnSigint()

    def record(trial: Trial) -> None:
        if log is not None:  # logged before told: a process killed in between is reconciled on resume
            trial = log.append(trial, renumber=True)  # workers sharing the log get distinct numbers
        trials.append(trial)
        searcher.tell(trial)
        if on_trial is not None:
            on_trial(trial)
        bar.update(trial)

    pool: EvaluatorPool | None = None
    try:
        if parallel is not None and workers > 1:
            pool = EvaluatorPool(parallel)
            evaluations = AskAhead(searcher, pool, rungs, memo, config.trials, lambda: stop.requested).run(
                trials, record)
        else:
            while len(trials) < config.trials and not stop.requested:
                proposal = searcher.ask()
                if proposal is None:
                    break
                trial = _run_trial(searcher, evaluator, dict(proposal.counts), len(trials), rungs, memo,
                                   proposal.info)  # fmt: skip
                evaluations += 0 if trial.info.get("memoized") else 1
                record(trial)
    finally:
        if pool is not None:
            pool.close()  # the workers end with the search: normally, on Ctrl-C or on an error
        stop.restore()
        bar.close()
        searcher.close()
    return SearchResult(
        searcher=searcher.name,
        trials=trials,
        best=searcher.best,
        pareto=searcher.pareto,
        wall_time_s=time.perf_counter() - start,
        resumed_trials=len(previous),
        evaluations=evaluations,
        interrupted=stop.requested,
    )


class _StopOnSigint:
    """The first Ctrl-C asks the loop to stop after the trial(s) in progress (which are logged); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after the trial(s) in progress (Ctrl-C again to abort now)", file=sys.stderr)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _rungs(config: SearchConfig, max_fidelity: int) -> tuple[int, ...]:
    if config.rungs is None:
        return (max_fidelity,)
    if config.rungs[-1] > max_fidelity:
        raise AutoPruneError(
            f"rungs {config.rungs} go beyond the {max_fidelity} validation batches the evaluator has; "
            f"use rungs up to {max_fidelity}"
        )
    return config.rungs if config.rungs[-1] == max_fidelity else (*config.rungs, max_fidelity)


def _run_trial(
    searcher: Searcher,
    evaluator: Evaluator,
    counts: dict[str, int],
    number: int,
    rungs: Sequence[int],
    memo: dict[Key, EvalResult],
    info: dict[str, Any] | None = None,
) -> Trial:
    start = time.perf_counter()
    info = dict(info or {})
    feasible = check_feasible(searcher, counts)
    key = candidate_key(counts)
    if key in memo:  # subproblem pruning: a repeat of a finished candidate costs nothing
        info["memoized"] = True
        return Trial(number, counts, "complete", memo[key], time.perf_counter() - start, feasible, info)
    outcome = evaluate_candidate(evaluator, counts, rungs, searcher.should_prune)
    if outcome.state == "complete" and outcome.result is not None:
        memo[key] = outcome.result
    return outcome_trial(number, counts, outcome, feasible, info, time.perf_counter() - start)


class _Progress:
    """A rich progress bar showing the best accuracy so far (a no-op when disabled)."""

    def __init__(self, total: int, done: int, searcher: Searcher, *, enabled: bool) -> None:
        self.searcher = searcher
        self.enabled = enabled
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]search[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"), TimeRemainingColumn(), console=console, transient=False,
        )  # fmt: skip
        self.progress.start()
        self.task = self.progress.add_task(searcher.name, total=total, completed=done, best="")

    def update(self, trial: Trial) -> None:
        if not self.enabled:
            return
        best = self.searcher.best
        text = "" if best is None or best.result is None else (
            f"best {best.result.accuracy:.4f} ± {best.result.accuracy_se:.4f} @ {best.result.macs_ratio:.3f} MACs"
        )
        self.progress.update(self.task, advance=1, best=text)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
