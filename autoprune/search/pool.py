"""Parallel evaluation for searchers that propose ahead (``asks_ahead``): a pool of evaluator processes.

``autoprune search --searcher ddpg --workers N`` runs N episodes at once on the machine's cores. The
searcher proposes up to N candidates from its current policy (as N vectorized environments stepping with
one policy), N worker processes evaluate them, each with its own evaluator rebuilt from a picklable recipe
(:class:`SupernetEvaluatorFactory`: the supernet file, the data settings and the seed; never a pickled
model), and the runner logs and tells the results *in the order they were proposed*
(:func:`autoprune.search.run_search`). Each process runs ``max(1, threads // N)`` torch threads.

Chosen over Stable-Baselines3's ``SubprocVecEnv``: there an environment steps (and would evaluate) inside its
subprocess and its reward reaches the agent through SB3's ``learn()`` loop, which the ask/tell bridge of
:mod:`autoprune.search.rl` does not use. Keeping ask and tell in the main process keeps what the bridge
guarantees: every finished trial is written to ``trials.jsonl`` before the agent learns from it, so a search
killed at any moment resumes from the log (episodes in flight are simply proposed again); and the same seed
gives the same proposals whichever worker finishes first. The same pool serves random search.

Processes are started with the ``spawn`` context (no forked copies of torch's thread pools or of CUDA
state), ignore Ctrl-C (the main process stops them) and end by themselves when the main process dies,
even by SIGKILL (a watchdog thread checks their parent).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from autoprune.defaults import DEFAULT_HOLDOUT
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, Evaluator, SupernetEvaluator
from autoprune.search.base import Searcher, Trial, TrialState

#: A candidate as a memo key: its (group, kept count) pairs, sorted.
Key = tuple[tuple[str, int], ...]
#: Seconds between a worker's checks that the process that started it is still alive.
_WATCH_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """One candidate evaluated rung by rung: its state (``complete``, ``pruned`` or ``failed``), its result at
    the last fidelity reached (None when failed), the seconds it took and the error of a failed one."""

    state: TrialState
    result: EvalResult | None
    seconds: float
    error: str | None = None


def evaluate_candidate(
    evaluator: Evaluator,
    counts: Mapping[str, int],
    rungs: Sequence[int],
    should_prune: Callable[[Mapping[str, int], EvalResult, int], bool] | None = None,
) -> Outcome:
    """Score ``counts`` at each fidelity of ``rungs``, asking ``should_prune`` after every partial one.

    A raising evaluation or a non-finite score is a ``failed`` outcome (the search goes on); user errors
    (:class:`AutoPruneError`) and interrupts propagate.
    """
    start = time.perf_counter()
    result: EvalResult | None = None
    try:
        for rung, fidelity in enumerate(rungs):
            result = evaluator.evaluate(counts, fidelity)
            if not (math.isfinite(result.accuracy) and math.isfinite(result.loss)):
                raise FloatingPointError(
                    f"non-finite score (accuracy {result.accuracy}, loss {result.loss}) at fidelity {fidelity}"
                )
            if fidelity < rungs[-1] and should_prune is not None and should_prune(counts, result, rung):
                return Outcome("pruned", result, time.perf_counter() - start)
    except (KeyboardInterrupt, AutoPruneError):
        raise
    except Exception as exc:  # a failed evaluation is a failed trial; the search goes on
        return Outcome("failed", None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    return Outcome("complete", result, time.perf_counter() - start)


@dataclass(frozen=True)
class SupernetEvaluatorFactory:
    """The recipe of a :class:`SupernetEvaluator` over a supernet file: picklable, rebuilt in each worker.

    Builds what ``autoprune search`` builds in its own process: the dataset's splits (seeded as the command
    seeds them), validation cut to ``val_batches`` batches of ``val_batch_size`` when given, adaptive BN on
    ``bn_batches`` calibration batches drawn with ``seed``, and the supernet loaded into a fresh ``model``.

    Attributes:
        supernet: ``supernet.pt`` written by ``autoprune supernet`` (or a search's own OUT/supernet.pt).
        model: The model name it was built from (``--model``).
        dataset: The dataset name (``--dataset``), with ``data_dir`` and ``image_size``.
        val_batch_size: Validation batch size (one fidelity unit).
        val_batches: Keep only the first ``val_batches`` validation batches (None: all).
        bn_batches: Calibration batches of adaptive BN per candidate.
        seed: The run's seed (data and calibration draws).
        holdout: Fraction of validation the search sets aside to judge its winner (before the ``val_batches``
            cut, as ``autoprune search`` does): the workers never read it.
        latency_batch_size: Measure each candidate's latency at this batch size (None: not measured).
        latency_form: ``eager`` or ``deploy``.
        device: Where to evaluate.
    """

    supernet: str
    model: str
    dataset: str
    data_dir: str | None = None
    image_size: int | None = None
    val_batch_size: int = 256
    val_batches: int | None = None
    bn_batches: int = 10
    seed: int = 0
    holdout: float = DEFAULT_HOLDOUT
    latency_batch_size: int | None = None
    latency_form: str = "eager"
    device: str = "cpu"

    def __call__(self) -> SupernetEvaluator:
        """A fresh evaluator (empty cache).

        Raises:
            AutoPruneError: a missing dataset or supernet file, or a supernet of another model.
        """
        from torch.utils.data import Subset

        from autoprune.data import load_dataset
        from autoprune.models import build_model
        from autoprune.seed import seed_everything
        from autoprune.supernet import Supernet

        seed_everything(self.seed)
        splits, _ = load_dataset(self.dataset, self.data_dir, image_size=self.image_size).hold_out(self.holdout)
        if self.val_batches is not None and self.val_batches * self.val_batch_size < len(splits.val):  # type: ignore[arg-type]
            splits = dataclasses.replace(splits, val=Subset(splits.val, range(self.val_batches * self.val_batch_size)))
        model = build_model(self.model, num_classes=splits.num_classes, in_channels=splits.in_channels)
        net, _ = Supernet.load(self.supernet, model.to(self.device))
        return SupernetEvaluator(
            net, splits.val_loader(self.val_batch_size), splits.calibration_loader(seed=self.seed),
            bn_batches=self.bn_batches, latency_batch_size=self.latency_batch_size, latency_form=self.latency_form,
            device=self.device,
        )  # fmt: skip


@dataclass(frozen=True)
class ParallelConfig:
    """Evaluate up to ``workers`` candidates at once, in processes that build their evaluator with ``factory``.

    Attributes:
        workers: Worker processes (>= 1; 1 evaluates in the calling process with its own evaluator).
        factory: A picklable callable returning an :class:`Evaluator` equivalent to the caller's
            (:class:`SupernetEvaluatorFactory`); called once in each worker.
        threads: Torch threads of each worker (None: ``max(1, torch.get_num_threads() // workers)``).
    """

    workers: int
    factory: Callable[[], Evaluator]
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise AutoPruneError(f"workers={self.workers!r} must be a positive integer (evaluator processes)")
        if self.threads is not None and self.threads < 1:
            raise AutoPruneError(f"threads={self.threads!r} must be >= 1 (torch threads per worker process)")


class EvaluatorPool:
    """``workers`` processes, each with its own evaluator; :meth:`submit` scores one candidate in one of them.

    Use as a context manager, or call :meth:`close` (``run_search`` does in a ``finally``, also on Ctrl-C or
    an error): the workers end at once.
    """

    def __init__(self, config: ParallelConfig) -> None:
        import torch

        self.size = config.workers
        threads = config.threads or max(1, torch.get_num_threads() // config.workers)
        self._executor = ProcessPoolExecutor(
            config.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(config.factory, threads, os.getpid()),
        )  # fmt: skip

    def submit(self, counts: Mapping[str, int], rungs: Sequence[int]) -> Future[Outcome]:
        """Evaluate ``counts`` at ``rungs`` (no early stopping) in a free worker; the future's result is its
        :class:`Outcome`."""
        return self._executor.submit(_evaluate, dict(counts), tuple(rungs))

    @staticmethod
    def outcome(future: Future[Outcome]) -> Outcome:
        """Wait for ``future``.

        Raises:
            AutoPruneError: a worker could not build its evaluator, or died (the logged trials are kept).
        """
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise AutoPruneError(f"an evaluator worker process died ({exc}); every finished trial is logged: "
                                 "continue with --resume") from None

    def close(self) -> None:
        """Stop the workers now: cancel queued evaluations, terminate the processes (running evaluations too).

        Workers hold nothing but their evaluator, so ending them at once is safe, and much faster than letting
        each interpreter wind torch down.
        """
        processes = list((getattr(self._executor, "_processes", None) or {}).values())  # no public handle
        self._executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        # The executor's own thread may reap a worker at the same time, and then join() can return before
        # is_alive() turns False: wait on is_alive() itself, and kill what SIGTERM did not end.
        _wait_ended(processes, 5.0)
        for p in processes:
            if p.is_alive():
                p.kill()
        _wait_ended(processes, 5.0)

    def __enter__(self) -> EvaluatorPool:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self.close()


def _wait_ended(processes: list[Any], seconds: float) -> None:
    """Join ``processes`` until none is alive or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        for p in processes:
            p.join(timeout=0.05)


# ---------------------------------------------------------------- the ask-ahead loop (run_search's)
def candidate_key(counts: Mapping[str, int]) -> Key:
    """The memo key of a candidate (the same for any order of its groups)."""
    return tuple(sorted((k, int(v)) for k, v in counts.items()))


def check_feasible(searcher: Searcher, counts: dict[str, int]) -> bool:
    """Whether ``counts`` meets the budget; a searcher that must propose feasible candidates and did not is a bug."""
    space = searcher.space
    feasible = space.feasible(counts)
    if not feasible and not searcher.proposes_infeasible:
        raise RuntimeError(
            f"searcher {searcher.name!r} proposed {counts}, which misses the budget (cost "
            f"{space.cost(counts):.4f} > target {space.target}); searchers must propose projected candidates"
        )
    return feasible


def outcome_trial(number: int, counts: dict[str, int], outcome: Outcome, feasible: bool, info: dict[str, Any],
                  seconds: float) -> Trial:  # fmt: skip
    """The trial of an evaluated candidate."""
    return Trial(number, counts, outcome.state, outcome.result, seconds, feasible, info, error=outcome.error)


def check_asks_ahead(searcher: Searcher, workers: int) -> None:
    """Refuse ``workers`` > 1 for a searcher that needs each result before its next proposal.

    Raises:
        AutoPruneError: the searcher does not ask ahead, or stops trials early (workers cannot ask it).
    """
    if not searcher.asks_ahead:
        raise AutoPruneError(
            f"searcher {searcher.name!r} proposes each candidate from the result of the one before, so it cannot "
            f"keep {workers} evaluations going at once; run it with one worker"
        )
    if type(searcher).should_prune is not Searcher.should_prune:
        raise AutoPruneError(f"searcher {searcher.name!r} stops trials early, which worker processes cannot ask it")


@dataclass
class _Pending:
    """A proposed candidate on its way: in a worker (``future``), or served by the memo (``future`` None)."""

    counts: dict[str, int]
    info: dict[str, Any]
    feasible: bool
    key: Key
    future: Future[Outcome] | None
    shared: bool  # a repeat of a candidate already in evaluation: it waits for that one


class AskAhead:
    """The parallel loop: up to ``pool.size`` proposals in flight, finished ones logged and told in order.

    After each tell one more candidate is asked for, so that the n-th proposal always follows the same tells
    (deterministic), with at most ``pool.size`` proposals asked and not yet told.
    """

    def __init__(self, searcher: Searcher, pool: EvaluatorPool, rungs: Sequence[int], memo: dict[Key, EvalResult],
                 total: int, stopped: Callable[[], bool]) -> None:  # fmt: skip
        self.searcher, self.pool, self.rungs, self.memo, self.total = searcher, pool, rungs, memo, total
        self.stopped = stopped
        self.pending: deque[_Pending] = deque()
        self.in_flight: dict[Key, Future[Outcome]] = {}
        self.evaluations = 0
        self.exhausted = False

    def run(self, trials: list[Trial], record: Callable[[Trial], None]) -> int:
        """Fill ``trials`` up to the total through ``record``; returns the evaluations run."""
        self._fill(len(trials))
        while self.pending:
            item = self.pending.popleft()
            record(self._finish(item, len(trials)))
            self._fill(len(trials))
        return self.evaluations

    def _fill(self, done: int) -> None:
        while (not self.exhausted and not self.stopped() and len(self.pending) < self.pool.size
               and done + len(self.pending) < self.total):  # fmt: skip
            proposal = self.searcher.ask()
            if proposal is None:
                self.exhausted = True
                return
            counts = dict(proposal.counts)
            feasible = check_feasible(self.searcher, counts)
            key = candidate_key(counts)
            future, shared = None, False
            if key not in self.memo:
                future = self.in_flight.get(key)
                shared = future is not None
                if future is None:
                    future = self.in_flight[key] = self.pool.submit(counts, self.rungs)
                    self.evaluations += 1
            self.pending.append(_Pending(counts, dict(proposal.info), feasible, key, future, shared))

    def _finish(self, item: _Pending, number: int) -> Trial:
        start = time.perf_counter()
        if item.future is None or (item.shared and item.key in self.memo):  # a repeat of a finished candidate
            return Trial(number, item.counts, "complete", self.memo[item.key], time.perf_counter() - start,
                         item.feasible, {**item.info, "memoized": True})  # fmt: skip
        outcome = self.pool.outcome(item.future)
        if self.in_flight.get(item.key) is item.future:
            del self.in_flight[item.key]  # a later repeat is served by the memo, or evaluated again if this failed
        if outcome.state == "complete" and outcome.result is not None:
            self.memo[item.key] = outcome.result
        seconds = time.perf_counter() - start if item.shared else outcome.seconds
        return outcome_trial(number, item.counts, outcome, item.feasible, item.info, seconds)


# ---------------------------------------------------------------- in the worker processes
_evaluator: Evaluator | None = None
_setup_error: str | None = None


def _start_worker(factory: Callable[[], Evaluator], threads: int, parent: int) -> None:
    """Initializer of a worker: its share of the threads, its own evaluator, and an end with its parent."""
    global _evaluator, _setup_error
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    try:
        _evaluator = factory()
    except AutoPruneError as exc:
        _setup_error = str(exc)
    except Exception as exc:  # reported with the first evaluation, in the main process
        _setup_error = f"{type(exc).__name__}: {exc}"


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCH_S)
    os._exit(1)  # the search's main process is gone (killed): nothing will read this worker's results


def _evaluate(counts: dict[str, int], rungs: tuple[int, ...]) -> Outcome:
    if _setup_error is not None or _evaluator is None:
        raise AutoPruneError(f"an evaluator worker process could not build its evaluator: {_setup_error}")
    return evaluate_candidate(_evaluator, counts, rungs)
