"""What ``autoprune search`` needs besides the pipeline: option checks, worker processes (and their share of the
CPU threads), the side-by-side summary and TensorBoard (kept apart so that the command reads as its steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoprune.cli.common import console, one_budget
from autoprune.cli.runfolder import read_marker
from autoprune.defaults import DEFAULT_HOLDOUT
from autoprune.errors import AutoPruneError

if TYPE_CHECKING:
    from autoprune.cli.common import Setup
    from autoprune.cli.options import RunOptions
    from autoprune.search.winner import WinnerChoice
    from autoprune.search_spaces import SearchSpace


def check_searcher_values(searcher: str, space: SearchSpace, options: dict[str, Any], seed: int) -> None:
    """Build the searcher once, and throw it away, so that a bad ``--searcher-option`` value (``n_startup_trials=-3``,
    an RL ``learning_rate=0``) fails before the dense model and the supernet are trained.

    Every searcher checks its option values when it is built, and building one is cheap: Optuna studies open
    lazily, RL agents build their networks over a template environment that never steps. The budget here is a
    placeholder (50% of the MACs): no option's validity depends on it.
    """
    from autoprune.cli.common import with_budget
    from autoprune.search import make_searcher

    try:
        make_searcher(searcher, with_budget(space, "target_macs", 0.5), seed=seed, **options)
    except TypeError as exc:  # a value of the wrong kind, caught by the class's own arithmetic
        raise AutoPruneError(f"--searcher-option for {searcher!r}: {exc}") from None


def searcher_settings(searcher: str, workers: int, rungs: int | None, pruner: str | None,
                      items: list[str]) -> tuple[dict[str, Any], int, bool]:  # fmt: skip
    """Check ``--workers``, ``--rungs`` and ``--pruner`` against the searcher; parse ``--searcher-option``.

    ``--workers N`` means N processes on one Optuna study for the Optuna searchers, and N episodes (candidates)
    evaluated at once by a pool of N evaluator processes for the searchers that ask ahead (RL agents, random);
    a searcher that needs each result before its next proposal (greedy, sampling) is refused.

    Returns the searcher's options, the number of rungs (default 3 with a pruner, else 1) and whether the
    searcher shares an Optuna study.
    """
    import optuna

    from autoprune.search import SEARCHERS

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial drowns the progress bar
    if workers < 1:
        raise AutoPruneError(f"--workers {workers} must be >= 1")
    kind = SEARCHERS.get(searcher)
    study = kind.study_based
    if workers > 1 and not study and not kind.asks_ahead:
        names = SEARCHERS.names()
        ahead = ", ".join(n for n in names if SEARCHERS.get(n).asks_ahead)
        studies = ", ".join(n for n in names if SEARCHERS.get(n).study_based)
        raise AutoPruneError(f"--workers {workers}: {searcher!r} proposes each candidate from the result of the one "
                             f"before, so it evaluates one at a time; drop --workers, or use a searcher that runs "
                             f"parallel episodes ({ahead}) or shares an Optuna study ({studies})")
    options = parse_searcher_options(items)
    if rungs is None:
        rungs = 3 if pruner not in (None, "none") else 1
    if rungs < 1:
        raise AutoPruneError(f"--rungs {rungs} must be >= 1 (1: full validation only)")
    if pruner is not None:
        if not study:
            raise AutoPruneError(f"--pruner applies to Optuna searchers; {searcher!r} has none (drop --pruner)")
        from autoprune.search.optuna_search import OptunaSearcher

        if issubclass(kind, OptunaSearcher):  # study-based: an Optuna searcher
            kind.check_pruner(pruner)  # an unknown or unusable pruner fails now, not after the supernet is trained
        options["pruner"] = pruner
    kind.check_options(options)  # likewise an option the searcher does not take
    return options, rungs, study


def check_study_options(study: bool, searcher: str, storage: str | None, study_name: str | None) -> None:
    """Before any training: refuse study options a searcher keeps no study for, and a storage that cannot be
    opened (a wrong URL, a missing driver, an unreachable database)."""
    if not study:
        if storage is not None or study_name is not None:
            raise AutoPruneError(f"--storage/--study-name apply to Optuna searchers; {searcher!r} keeps no study")
        return
    if storage is not None:
        from autoprune.search.optuna_storage import open_storage

        open_storage(storage)


def study_options(options: dict[str, Any], study: bool, searcher: str, storage: str | None, study_name: str | None,
                  trials: int, out: Path) -> None:  # fmt: skip
    """Point an Optuna searcher at its study (default: SQLite in OUT/study.db; :func:`check_study_options` has
    refused study options for other searchers)."""
    if study:
        options.setdefault("storage", storage or f"sqlite:///{(out / 'study.db').resolve()}")
        options.setdefault("study_name", study_name or f"autoprune-{searcher}")
        options.setdefault("total_trials", trials)


def worker_threads(threads: int | None, workers: int) -> int | None:
    """Torch threads of each of ``workers`` processes: they divide ``threads`` (default: torch's own count).

    None (torch's choice, or ``--threads`` as given) for one process. Every process of a search computes the
    same share from the same options, so the machine's cores are not oversubscribed.
    """
    if workers <= 1:
        return threads
    import torch

    return max(1, (threads or torch.get_num_threads()) // workers)


def oversubscription_note(workers: int, cores: int | None) -> str | None:
    """The line printed when ``workers`` processes (one torch thread each at least) outnumber the ``cores``."""
    if cores is None or workers <= cores:
        return None
    return (f"note: --workers {workers} on {cores} CPU cores: {workers} one-thread processes share {cores} cores, "
            f"so they slow each other down; use --workers {cores} or fewer on this machine")


def parse_searcher_options(items: list[str]) -> dict[str, Any]:
    """``--searcher-option key=value`` (value parsed as JSON when it can be, else kept as text)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AutoPruneError(f"--searcher-option {item!r} must look like key=value, e.g. warmup=10")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def side_by_side(model: str, n_trials: int, searcher: str, dense: dict[str, Any], uniform: dict[str, Any],
                  pruned: dict[str, Any], choice: WinnerChoice, space: SearchSpace) -> str:
    """Dense, uniform and the winner side by side, as plain aligned text (fits any terminal or log).

    Test and validation accuracy with their standard errors, MACs (and the fraction of dense), params,
    latency at batch 1 (eager, and in the deploy form).
    """

    def acc(m: dict[str, Any]) -> str:
        se = m.get("accuracy_se")
        return "-" if m.get("accuracy") is None else f"{m['accuracy']:.4f}" + (f" ± {se:.4f}" if se else "")

    def val(r: Any) -> str:
        return f"{r.score.accuracy:.4f} ± {r.score.accuracy_se:.4f}"

    winner = "winner (uniform)" if choice.winner is choice.uniform else "winner"
    header = ("", "test accuracy", "val accuracy", "MACs", "params", "latency ms b1 (deploy)")
    rows = [header]
    for name, m, v in (("dense", dense, "-"), ("uniform", uniform, val(choice.uniform)),
                       (winner, pruned, val(choice.winner))):
        rows.append((name, acc(m), v, f"{m['macs'] / 1e6:.2f}M ({m['macs'] / dense['macs']:.3f})",
                     f"{m['params'] / 1e3:.1f}k",
                     "-" if "latency_ms" not in m else f"{m['latency_ms']:.2f} ({m['deploy_latency_ms']:.2f})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{model} at {space.metric} <= {space.target:g}: winner of {n_trials} trials ({searcher}), no finetuning"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    return "\n".join(lines)


def spawn_workers(n: int, out: Path, supernet: Path, options: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    """N more processes of this same command on the same study (they skip export and report)."""
    argv = list(sys.argv[1:])
    extra = ["--worker", "--no-progress", "--supernet", str(supernet.resolve()), "--out", str(out),
             "--storage", str(options["storage"]), "--study-name", str(options["study_name"])]
    procs = []
    for i in range(n):
        log = (out / f"worker-{i + 1}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "autoprune", *argv, *extra], stdout=log, stderr=log))
    return procs


def wait_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        console.print(f"[yellow]warning:[/] {len(failed)} worker(s) failed; see worker-*.log in the run folder")


def tensorboard_logger(out: Path) -> Any:
    from autoprune.analysis.tensorboard import TensorBoardLogger

    return TensorBoardLogger(out / "tensorboard").on_trial


def resolve_holdout(holdout: float | None, settings: dict[str, Any], resumed: Path | None) -> float:
    """``--holdout`` checked, defaulted and recorded in ``settings``; a resumed run from before the option (its
    recorded settings lack it) keeps no hold-out, as it began (and ``settings`` stays without it)."""
    if holdout is not None and (isinstance(holdout, bool) or not 0.0 <= holdout < 1.0):
        raise AutoPruneError(f"--holdout {holdout} must be in [0, 1): the fraction of the validation split set "
                             "aside to judge the winner (0: none)")
    recorded = (read_marker(resumed) or {}).get("settings") if resumed is not None and resumed.is_dir() else None
    if holdout is None and isinstance(recorded, dict) and "holdout" not in recorded:
        console.print("resuming a run from before --holdout: no hold-out, as it began", highlight=False)
        return 0.0  # its trials were scored on the whole validation split: judge the same way
    settings["holdout"] = DEFAULT_HOLDOUT if holdout is None else holdout
    return float(settings["holdout"])


def hold_out(splits: Any, fraction: float) -> tuple[Any, Any]:
    """``--holdout``: set that fraction of validation aside (:meth:`DataSplits.hold_out`), as a one-line error."""
    try:
        return splits.hold_out(fraction)
    except ValueError as e:
        raise AutoPruneError(f"--holdout {fraction}: {e}") from None


def search_budget(searcher: str, settings: dict[str, Any], targets: str | None,
            given: dict[str, float | None]) -> tuple[str, float, Any]:  # fmt: skip
    """The run's one budget (recorded in ``settings``); with ``--target-range`` its upper end, and the range."""
    if targets is not None:
        raise AutoPruneError("--targets lists targets to answer from a saved policy: add --policy RUN/policy.zip, "
                             "or give one budget (--target-macs)")
    trained_range = None
    if settings["target_range"] is not None:  # one budget-conditioned agent (as given, or adopted by --resume)
        from autoprune.pipelines.policy import training_budget

        budget, target, trained_range = training_budget(searcher, settings["target_range"], **given)
    else:
        budget, target = one_budget(**given)
    settings.update(budget=budget, target=target)
    return budget, target, trained_range


def parallel_episodes(s: Setup, run: RunOptions, workers: int, supernet: Path | None, val_batch_size: int,
              val_batches: int | None, bn_batches: int, holdout: float) -> Any:
    """Parallel episodes: ``workers`` evaluator processes, each rebuilding this process's evaluator from files
    (no latency measured: a latency budget is refused with --workers, timings would disturb each other)."""
    import torch

    from autoprune.search.pool import ParallelConfig, SupernetEvaluatorFactory

    factory = SupernetEvaluatorFactory(
        supernet=str((supernet or s.out / "supernet.pt").resolve()), model=run.model, dataset=run.dataset,
        data_dir=None if run.data_dir is None else str(run.data_dir), image_size=run.image_size,
        val_batch_size=val_batch_size, val_batches=val_batches, bn_batches=bn_batches, seed=run.seed,
        holdout=holdout, device=str(s.device),
    )  # fmt: skip
    return ParallelConfig(workers, factory, threads=torch.get_num_threads())  # this process's share already
