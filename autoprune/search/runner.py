"""The search loop shared by every searcher: ask -> evaluate (rung by rung) -> tell, recorded as it goes.

Every finished trial is appended at once to ``trials.jsonl`` (the resume log, one JSON object per line)
and ``trials.csv`` (for people and spreadsheets), so progress survives a crash. Rerunning with
``resume=True`` reads ``trials.jsonl`` back, lets the searcher :meth:`~Searcher.restore` from it and
continues the count; finished evaluations are never repeated (their results are memoized by candidate).

A trial is written to the log before the searcher is told about it: the log is the record of what finished.
A process killed between the two leaves a trial the searcher's own store (an Optuna study) still holds as
running; the resume tells it the logged result (:meth:`Searcher.restore`) instead of losing or repeating it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, Evaluator
from autoprune.search.base import Searcher, Trial

CSV_FIELDS = (
    "number", "state", "feasible", "accuracy", "loss", "macs", "macs_ratio", "params", "latency_ms",
    "fidelity", "seconds", "cached", "counts", "info", "error",
)  # fmt: skip


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


class TrialLog:
    """Append-only ``trials.jsonl`` + ``trials.csv`` in a run folder (each line flushed and fsynced)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.jsonl = self.folder / "trials.jsonl"
        self.csv = self.folder / "trials.csv"

    def read(self) -> list[Trial]:
        """Trials of earlier runs.

        A torn last line (a process killed mid-write: no final newline) is skipped: the trial it was recording
        did not finish. Any other bad line is an error naming it. See :meth:`repair`.
        """
        if not self.jsonl.exists():
            return []
        text = self.jsonl.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()
        trials = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                trials.append(Trial.from_dict(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise AutoPruneError(
                    f"{self.jsonl}: line {i + 1} is not a trial ({exc}); remove that line or start a new --out"
                ) from None
        return trials

    def repair(self) -> None:
        """Cut a torn last line off both files, so that appends start on a clean line.

        Only while no other process appends (before workers start): a line being written looks torn.
        """
        for path in (self.jsonl, self.csv):
            if not path.exists():
                continue
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with path.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def reset(self) -> None:
        for path in (self.jsonl, self.csv):
            path.unlink(missing_ok=True)

    def append(self, trial: Trial, *, renumber: bool = False) -> Trial:
        """Write ``trial`` to both files, holding a lock on ``trials.jsonl`` (worker processes may share them).

        With ``renumber``, the trial gets the next number of the log (its line count), so that trials of
        several workers appending to one log are numbered 0, 1, 2, ... without gaps or repeats.
        Returns the trial as written.
        """
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.jsonl, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if renumber:
                trial = dataclasses.replace(trial, number=self.jsonl.read_bytes().count(b"\n"))
            _write_all(fd, trial.to_json() + "\n")
            new = not self.csv.exists() or self.csv.stat().st_size == 0
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(csv_row(trial))
            _append_line(self.csv, buf.getvalue())
        finally:
            os.close(fd)  # releases the lock
        return trial


def csv_row(trial: Trial) -> dict[str, Any]:
    """One ``trials.csv`` row (counts and info as JSON text)."""
    r = trial.result
    return {
        "number": trial.number,
        "state": trial.state,
        "feasible": int(trial.feasible),
        "accuracy": "" if r is None else f"{r.accuracy:.6f}",
        "loss": "" if r is None else f"{r.loss:.6f}",
        "macs": "" if r is None else r.macs,
        "macs_ratio": "" if r is None else f"{r.macs_ratio:.6f}",
        "params": "" if r is None else r.params,
        "latency_ms": "" if r is None or r.latency_ms is None else f"{r.latency_ms:.4f}",
        "fidelity": "" if r is None else r.fidelity,
        "seconds": f"{trial.seconds:.4f}",
        "cached": "" if r is None else int(r.cached),
        "counts": json.dumps(trial.counts, sort_keys=True),
        "info": json.dumps(trial.info, sort_keys=True),
        "error": trial.error or "",
    }


def _append_line(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, text)
    finally:
        os.close(fd)


def _write_all(fd: int, text: str) -> None:
    # One write per line with O_APPEND, then fsync: a finished trial survives a crash of the machine.
    data = text.encode()
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write ({written} of {len(data)} bytes): is the disk full?")
    os.fsync(fd)


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

    Returns:
        The trials of this search (earlier runs' included when resuming), the best and the Pareto front.

    Raises:
        AutoPruneError: bad rungs, or a corrupt trial log when resuming.
        RuntimeError: a searcher proposed a candidate outside its space (a bug in that searcher).
    """
    start = time.perf_counter()
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
    memo: dict[tuple[tuple[str, int], ...], EvalResult] = {
        _key(t.counts): t.result for t in previous if t.state == "complete" and t.result is not None
    }
    trials = list(previous)
    evaluations = 0
    searcher.plan_budget(config.trials - len(previous))
    bar = _Progress(config.trials, len(previous), searcher, enabled=progress)
    stop = _StopOnSigint()
    try:
        while len(trials) < config.trials and not stop.requested:
            counts = searcher.ask()
            if counts is None:
                break
            info = searcher.ask_info()
            trial = _run_trial(searcher, evaluator, dict(counts), len(trials), rungs, memo, info)
            evaluations += 0 if trial.info.get("memoized") else 1
            if log is not None:  # logged before told: a process killed in between is reconciled on resume
                trial = log.append(trial, renumber=True)  # workers sharing the log get distinct numbers
            trials.append(trial)
            searcher.tell(trial)
            if on_trial is not None:
                on_trial(trial)
            bar.update(trial)
    finally:
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
    """The first Ctrl-C asks the loop to stop after the current trial (which is logged); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after the current trial (Ctrl-C again to abort now)", file=sys.stderr)

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


def _key(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, int(v)) for k, v in counts.items()))


def _run_trial(
    searcher: Searcher,
    evaluator: Evaluator,
    counts: dict[str, int],
    number: int,
    rungs: Sequence[int],
    memo: dict[tuple[tuple[str, int], ...], EvalResult],
    info: dict[str, Any] | None = None,
) -> Trial:
    start = time.perf_counter()
    info = dict(info or {})
    space = searcher.space
    feasible = space.feasible(counts)
    if not feasible and not searcher.proposes_infeasible:
        raise RuntimeError(
            f"searcher {searcher.name!r} proposed {counts}, which misses the budget (cost "
            f"{space.cost(counts):.4f} > target {space.target}); searchers must propose projected candidates"
        )
    key = _key(counts)
    if key in memo:  # subproblem pruning: a repeat of a finished candidate costs nothing
        info["memoized"] = True
        return Trial(number, counts, "complete", memo[key], time.perf_counter() - start, feasible, info)
    result: EvalResult | None = None
    try:
        for rung, fidelity in enumerate(rungs):
            result = evaluator.evaluate(counts, fidelity)
            if not (math.isfinite(result.accuracy) and math.isfinite(result.loss)):
                raise FloatingPointError(
                    f"non-finite score (accuracy {result.accuracy}, loss {result.loss}) at fidelity {fidelity}"
                )
            if fidelity < rungs[-1] and searcher.should_prune(counts, result, rung):
                return Trial(number, counts, "pruned", result, time.perf_counter() - start, feasible, info)
    except (KeyboardInterrupt, AutoPruneError):
        raise
    except Exception as exc:  # a failed evaluation is a failed trial; the search goes on
        return Trial(number, counts, "failed", None, time.perf_counter() - start, feasible, info,
                     error=f"{type(exc).__name__}: {exc}")
    assert result is not None
    memo[key] = result
    return Trial(number, counts, "complete", result, time.perf_counter() - start, feasible, info)


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
