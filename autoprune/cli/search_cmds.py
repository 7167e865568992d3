"""``autoprune search``: search per-group keep ratios over a supernet and export the winner, no finetuning."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # the heavy libraries are imported where a command runs, not for --help
    from torch import nn

    from autoprune.search_spaces import SearchSpace
    from autoprune.supernet import Supernet


from autoprune.cli import options as opt
from autoprune.cli.app import app
from autoprune.cli.common import (
    Setup,
    at_least,
    console,
    limit_validation,
    precision_used,
    start,
    user_errors,
    with_budget,
)
from autoprune.cli.runfolder import adopt_recorded
from autoprune.cli.search_support import (
    check_searcher_values,
    check_study_options,
    hold_out,
    oversubscription_note,
    parallel_episodes,
    resolve_holdout,
    search_budget,
    searcher_settings,
    side_by_side,
    spawn_workers,
    study_options,
    tensorboard_logger,
    wait_workers,
    worker_threads,
)
from autoprune.cli.supernet_cmds import BnBatches, Space
from autoprune.cli.supernet_start import dense_model_of, train_dense_once
from autoprune.defaults import DEFAULT_HOLDOUT, DEFAULT_TOP_K
from autoprune.errors import AutoPruneError

SearcherName = Annotated[
    str, typer.Option("--searcher", help="tpe, cmaes, gp, qmc, nsga2 (Optuna; nsga2: Pareto front), ddpg, td3, sac, "
                      "ppo (Stable-Baselines3), greedy (slimming), random.")
]


#: The settings a resumed search must share with the run it continues (--trials may grow, --workers change).
RESUME_DEFINING = ("model", "dataset", "data_dir", "image_size", "checkpoint", "supernet", "space", "budget", "target",
                   "latency_batch_size", "latency_form", "searcher", "rungs", "pruner", "storage", "study_name",
                   "searcher_option", "supernet_epochs", "train_epochs", "bn_batches", "val_batch_size", "val_batches",
                   "seed", "target_range", "holdout")


#: Options that, left out of a --resume, take the value the run recorded.
RESUME_ADOPTS = ("checkpoint", "supernet", "data_dir", "space", "image_size", "rungs", "pruner", "storage",
                 "study_name", "val_batch_size", "val_batches", "target_macs", "target_params", "target_latency",
                 "target_range", "holdout")


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


@app.command("search")
@user_errors
@opt.run_options()
def search_cmd(
    run: opt.RunOptions,
    supernet: Annotated[
        Path | None, typer.Option("--supernet", help="supernet.pt from `autoprune supernet`; default: build one.")
    ] = None,
    space: Space = None,
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    target_range: opt.TargetRange = None,
    policy: opt.Policy = None,
    targets: opt.Targets = None,
    target_latency: Annotated[
        float | None,
        typer.Option("--target-latency", help="Budget: fraction of the dense latency at --latency-batch-size, "
                     "predicted by a per-layer table measured here (instead of --target-macs)."),
    ] = None,
    latency_batch_size: Annotated[int, typer.Option("--latency-batch-size")] = 1,
    latency_form: Annotated[
        str,
        typer.Option("--latency-form", help="Form the latency table and candidates are timed in: 'deploy' "
                     "(BatchNorm folded, channels-last, as autoprune.optimize_for_inference gives) or 'eager'."),
    ] = "deploy",
    searcher: SearcherName = "tpe",
    trials: Annotated[int, typer.Option("--trials", help="Candidate evaluations (pruned/failed ones count).")] = 50,
    rungs: Annotated[
        int | None, typer.Option("--rungs", help="Fidelity rungs for early stopping (1 = full validation only; "
                                 "default 3 with a --pruner, else 1).")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option("--pruner", help="Optuna searchers: none, median, sha, hyperband.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db); "
                                 "postgresql://... for workers on many machines.")
    ] = None,
    study_name: Annotated[str | None, typer.Option("--study-name", help="Optuna study name.")] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="N processes on this machine. RL searchers (ddpg, td3, sac, ppo) and "
                          "random: parallel episodes, N candidates of the current policy evaluated at once by N "
                          "evaluator processes, logged and learned from in the order proposed. Optuna searchers: "
                          "N processes on one study. Greedy and sampling: 1 only. The processes divide the CPU "
                          "threads: each runs max(1, T // N) torch threads, T = --threads or torch's default.")
    ] = 1,
    searcher_option: Annotated[
        list[str] | None, typer.Option("--searcher-option", help="key=value passed to the searcher; repeatable.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", metavar="", help="Continue the search recorded in --out (with the same "
                           "settings; --trials may grow).")
    ] = False,
    supernet_epochs: opt.SupernetEpochs = 3,
    train_epochs: opt.DenseEpochs = 10,
    finetune_epochs: Annotated[
        int, typer.Option("--finetune-epochs", help="Optional finetuning of the winner (0: none, the default).")
    ] = 0,
    bn_batches: BnBatches = 10,
    val_batch_size: opt.ValBatchSize = None,
    val_batches: opt.ValBatches = None,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Best trials re-scored on the whole validation split (with a larger "
                          "BatchNorm calibration) to fix the winner; the uniform candidate is always re-scored too.")
    ] = DEFAULT_TOP_K,
    rescore_bn_batches: Annotated[
        int | None, typer.Option("--rescore-bn-batches", help="Calibration batches (64 training images each) of "
                                 "that re-scoring (default: 4 x --bn-batches).")
    ] = None,
    holdout: Annotated[
        float | None, typer.Option("--holdout", help=f"Fraction of the validation split set aside before the "
                                   "search: the search and the re-scoring never read it, and the winner is exported "
                                   "only if it scores above the uniform candidate on it (else the uniform candidate "
                                   f"is). 0: no hold-out. Default {DEFAULT_HOLDOUT:g}.")
    ] = None,
    onnx: opt.Onnx = True,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", metavar="", help="Log trials to OUT/tensorboard.")
    ] = False,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
) -> None:
    """Search per-group keep ratios over a weight-sharing supernet; export the winner without finetuning.

    Builds the supernet first (in OUT/supernet.pt, resumable) unless --supernet is given. Every candidate
    evaluated meets the budget; trials are appended to OUT/trials.csv as they finish; rerun with --resume to
    continue an interrupted search.
    """
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from autoprune.pipelines.search import search_supernet
    from autoprune.pipelines.search_report import ReportRequest
    from autoprune.search import SEARCHERS, TrialLog, fidelity_rungs

    started = time.perf_counter()
    SEARCHERS.get(searcher)  # an unknown name fails before any work
    if resume and run.out is not None:  # options left out take the recorded run's values
        adopted = adopt_recorded(run.out, settings, RESUME_ADOPTS)
        run.checkpoint, supernet, run.data_dir = (_path(settings[k]) for k in ("checkpoint", "supernet", "data_dir"))
        space, run.image_size, rungs, pruner, storage, study_name, val_batch_size, val_batches, holdout = (
            settings[k] for k in ("space", "image_size", "rungs", "pruner", "storage", "study_name", "val_batch_size",
                                  "val_batches", "holdout"))
        target_macs, target_params, target_latency = (
            settings[k] for k in ("target_macs", "target_params", "target_latency"))
        if adopted:
            console.print(f"resuming with the run's own {', '.join(adopted)}", highlight=False)
    given = {"target_macs": target_macs, "target_params": target_params, "target_latency": target_latency}
    holdout = resolve_holdout(holdout, settings, run.out if resume else None)
    if policy is not None:  # answer targets from a saved policy: no search (autoprune.pipelines.policy)
        return _answer_from_policy(run, settings, policy, targets, given, supernet, space, target_range is not None,
                                   resume, bn_batches, val_batch_size, val_batches, rescore_bn_batches, onnx, holdout)
    budget, target, trained_range = search_budget(searcher, settings, targets, given)
    at_least(1, top_k=top_k, rescore_bn_batches=rescore_bn_batches, trials=trials,
             latency_batch_size=latency_batch_size, val_batch_size=val_batch_size, val_batches=val_batches,
             threads=run.threads, **({} if supernet else {"supernet_epochs": supernet_epochs}),
             **({} if supernet or run.checkpoint else {"train_epochs": train_epochs}))
    at_least(0, bn_batches=bn_batches, finetune_epochs=finetune_epochs)
    precision_used(run, trains=supernet is None or finetune_epochs > 0,
                   why_not="--supernet given and --finetune-epochs 0")
    if resume and run.overwrite:
        raise AutoPruneError("give --resume (continue the run in --out) or --overwrite (replace it), not both")
    options, rungs, study = searcher_settings(searcher, workers, rungs, pruner, searcher_option or [])
    check_study_options(study, searcher, storage, study_name)  # before the dense model and supernet are trained
    if target_latency is not None:
        from autoprune.engine.deploy import FORMS

        if latency_form not in FORMS:
            raise AutoPruneError(f"--latency-form {latency_form!r}: use one of {', '.join(FORMS)}")
    ahead = workers > 1 and not study  # parallel episodes: a pool of evaluator processes (autoprune.search.pool)
    shared_study = workers > 1 and study  # processes of this same command on one Optuna study
    if ahead and target_latency is not None:
        raise AutoPruneError(f"--workers {workers} with --target-latency: every candidate's latency would be timed "
                             f"while {workers - 1} other process(es) compute beside it; search a latency budget "
                             "with --workers 1")
    run.threads = worker_threads(run.threads, workers)  # the processes divide the cores between them
    s = start("search", run, settings, mode="worker" if worker else "resume" if resume else "new",
              defining=RESUME_DEFINING)
    if workers > 1:
        import torch

        what = f"parallel episodes: {workers} evaluator processes," if ahead else \
            f"{'worker' if worker else 'main'} process of {workers}:"
        console.print(f"{what} {torch.get_num_threads()} torch thread(s)" + (" each" if ahead else ""),
                      highlight=False)
        note = None if worker else oversubscription_note(workers, os.cpu_count())
        if note is not None:
            console.print(note, highlight=False)
    net, search_space, dense_model = _supernet_and_space(s, run.model, run.dataset, supernet, space, run.checkpoint,
                                                         run.seed, run.progress, supernet_epochs, train_epochs,
                                                         bn_batches, lambda sp: check_searcher_values(
                                                             searcher, sp, options, run.seed))
    with net.gates.detached():  # the latency table times the plain model, without the supernet's hooks
        search_space = _retarget(s, search_space, budget, target, latency_batch_size, latency_form, resume or worker)
    study_options(options, study, searcher, storage, study_name, trials, s.out)
    if trained_range is not None:  # the searcher saves its agent as OUT/policy.zip when the search ends
        from autoprune.pipelines.policy import training_options

        options.update(training_options(trained_range, s.out, model=run.model, dataset=run.dataset,
                                        supernet=str((supernet or s.out / "supernet.pt").resolve())))
    procs = []
    if shared_study and not worker:
        log = TrialLog(s.out)  # one log for every process of the study
        (log.repair if resume else log.reset)()
        procs = spawn_workers(workers - 1, s.out, supernet or s.out / "supernet.pt", options)
    s.splits, held = hold_out(s.splits, holdout)  # before --val-batches: that cut limits what the search reads
    val_batch_size = limit_validation(s, val_batch_size, val_batches)
    n_val = math.ceil(len(s.splits.val) / val_batch_size)  # type: ignore[arg-type]
    parallel = parallel_episodes(s, run, workers, supernet, val_batch_size, val_batches, bn_batches,
                                 holdout) if ahead else None
    request = None if worker else ReportRequest(  # workers only search; this process fixes and reports the winner
        dense_model=dense_model, finetune_epochs=finetune_epochs, precision=run.precision, onnx=onnx,
        run_report=s.report("search", run.model, run.dataset, run.seed, started),
        config={"rungs": rungs, "workers": workers, "holdout": holdout,
                "supernet": str(supernet or s.out / "supernet.pt"),
                "checkpoint": None if run.checkpoint is None else str(run.checkpoint)},
        before_winner=lambda: wait_workers(procs))
    outcome = search_supernet(
        net, search_space, s.splits, searcher=searcher, trials=trials, seed=run.seed,
        rungs=fidelity_rungs(n_val, rungs) if rungs > 1 else None, bn_batches=bn_batches, options=options,
        val_batch_size=val_batch_size, out=s.out, resume=resume or worker or shared_study,
        progress=run.progress and not worker, on_trial=tensorboard_logger(s.out) if tensorboard else None,
        latency_batch_size=latency_batch_size if target_latency is not None else None, latency_form=latency_form,
        device=s.device, repair_log=not worker and not shared_study, extract=False, top_k=top_k,
        rescore_bn_batches=rescore_bn_batches, report=request, parallel=parallel, holdout=held,
    )  # fmt: skip
    if not worker:
        _finish(outcome, request, procs, s.out, run.model, searcher, search_space, settings["target_range"])


def _finish(outcome: Any, request: Any, procs: list[Any], out: Path, model: str, searcher: str, space: Any,
            target_range: str | None) -> None:  # fmt: skip
    """Print the winner beside dense and uniform (and the saved policy), or how to resume an interrupted run."""
    from autoprune.search import TrialLog

    if outcome.report is None or outcome.choice is None:  # interrupted: nothing fixed, exported or reported
        wait_workers(procs)
        console.print(f"[yellow]interrupted[/] after {len(outcome.result.trials)} trials; every finished trial is in "
                      f"{TrialLog(out).csv}. Continue with the same command plus --resume (and --out {out}).")
        raise typer.Exit(130)
    final, choice = outcome.report, outcome.choice
    if target_range is not None and request is not None and request.run_report is not None:
        from autoprune.pipelines.policy import record_policy

        final = record_policy(final, request.run_report, out)
        console.print(f"policy: {out / 'policy.zip'} (answer a target of {target_range} with --policy "
                      f"{out / 'policy.zip'} --target-macs T)", highlight=False)
    print(side_by_side(model, final.data["search"]["trials"], searcher, final.dense, final.uniform, final.pruned,
                       choice, space))
    print(f"{choice.statement}\n{_test_statement(final.data)}report: {final.path}  (HTML page and figures: "
          f"autoprune report {out})")


def _test_statement(report: dict[str, Any]) -> str:
    """The exported model against the uniform candidate on test (a line), or nothing for an older report."""
    statement = (report.get("vs_uniform_test") or {}).get("statement")
    return f"{statement}\n" if statement else ""


def _answer_from_policy(
    run: opt.RunOptions, settings: dict[str, Any], policy: Path, targets: str | None, given: dict[str, float | None],
    supernet: Path | None, space: str | None, ranged: bool, resume: bool, bn_batches: int, val_batch_size: int | None,
    val_batches: int | None, rescore_bn_batches: int | None, onnx: bool, holdout: float,
) -> None:
    """``search --policy``: answer each target with the saved policy, re-score, export and report it."""
    from autoprune.pipelines.policy import answer_targets, check_policy_run, policy_space, policy_targets
    from autoprune.search.rl import SavedPolicy

    precision_used(run, trains=False, why_not="--policy answers from a trained policy")
    if ranged or resume:
        raise AutoPruneError(f"--policy answers from a trained policy without searching: drop "
                             f"{'--target-range' if ranged else '--resume'}")
    saved = SavedPolicy.load(policy)
    wanted = policy_targets(saved, targets=targets, **given)
    check_policy_run(saved, model=run.model, dataset=run.dataset)
    source = supernet or (Path(saved.info.supernet) if saved.info.supernet else None)
    if source is None or not source.is_file():
        raise AutoPruneError(f"--policy {policy}: its supernet {saved.info.supernet or '(not recorded)'} is not a "
                             "file; pass the supernet.pt it was trained over with --supernet")
    settings.update(budget=f"target_{saved.info.metric}", target=wanted[0] if len(wanted) == 1 else wanted)
    s = start("search", run, settings, defining=RESUME_DEFINING)
    net, resolved, dense = _supernet_and_space(s, run.model, run.dataset, source, space, run.checkpoint, run.seed,
                                               run.progress, 1, 1, bn_batches)
    answer_space = policy_space(saved, net, resolved if space is not None else None)
    s.splits, held = hold_out(s.splits, holdout)
    size = limit_validation(s, val_batch_size, val_batches)
    answers = answer_targets(
        net, answer_space, s.splits, saved, wanted, s.out, model_name=run.model, cli=s.settings, dense_model=dense,
        rescore_bn_batches=4 * max(bn_batches, 1) if rescore_bn_batches is None else rescore_bn_batches,
        val_batch_size=size, seed=run.seed, device=s.device, onnx=onnx, progress=run.progress, holdout=held,
    )  # fmt: skip
    for a in answers:
        print(side_by_side(run.model, 1, f"policy {saved.info.searcher}", a.report.dense, a.report.uniform,
                           a.report.pruned, a.winner.choice, dataclasses.replace(answer_space, target=a.target)))
        print(f"{a.winner.choice.statement}\n{_test_statement(a.report.data)}report: {a.report.path}")


def _supernet_and_space(
    s: Setup, model: str, dataset: str, supernet: Path | None, space: str | None, checkpoint: Path | None,
    seed: int, progress: bool, supernet_epochs: int, train_epochs: int, bn_batches: int,
    check: Callable[[SearchSpace], None] = lambda _space: None,
) -> tuple[Supernet, SearchSpace, nn.Module | None]:
    """Load the given supernet, or build one in OUT/supernet.pt (training the dense model first if needed).

    Also returns a copy of the dense model (trained or from --checkpoint) for the report, if there is one.
    ``check`` sees the space before anything is trained (it refuses what would fail only after training).
    """
    from autoprune.engine.structure import ModelStructure
    from autoprune.pipelines.oneshot import build_supernet, resolve_space
    from autoprune.search_spaces import space_from_dict
    from autoprune.supernet import Supernet, SupernetConfig

    if supernet is not None:
        dense = copy.deepcopy(s.model) if checkpoint is not None else None
        net, meta = Supernet.load(supernet, s.model)
        dense = dense if dense is not None else dense_model_of(meta, model, s)
        if space is not None or "space" not in meta:
            return net, resolve_space(net.structure, model, space, None), dense
        return net, space_from_dict(meta["space"], net.structure), dense
    ckpt = s.out / "supernet.pt"
    # the space depends on the architecture only: a bad --space fails before the dense model is trained
    search_space = resolve_space(ModelStructure(s.model, s.input_shape), model, space, None)
    check(search_space)
    dense_file = checkpoint if checkpoint is not None else train_dense_once(
        s, model, dataset, train_epochs, 128, seed, progress, s.report("search", model, dataset, seed))
    dense = copy.deepcopy(s.model)
    run = build_supernet(
        s.model, s.input_shape, search_space, s.splits.train_loader(128, seed=seed),
        SupernetConfig(epochs=supernet_epochs, seed=seed, precision=s.precision),
        calibration=s.splits.calibration_loader(seed=seed),
        checkpoint=ckpt, device=s.device, progress=progress,
        meta={"model": model, "dataset": dataset, "num_classes": s.splits.num_classes,
              "in_channels": s.splits.in_channels, "image_size": list(s.splits.image_size),
              "dense_checkpoint": str(Path(dense_file).resolve())},
    )  # fmt: skip
    return run.supernet, run.space, dense


def _retarget(
    s: Setup, space: SearchSpace, budget: str, target: float, batch_size: int, form: str, reuse_table: bool,
) -> SearchSpace:
    """The space with the one budget the user gave (a latency table is measured once and kept in OUT)."""
    if budget != "target_latency":
        return with_budget(space, budget, target)
    target_latency = target
    macs_space = dataclasses.replace(space, metric="macs", target=1.0, latency_table=None)
    from autoprune.engine.latency_table import LatencyTable, build_latency_table

    path = s.out / "latency_table.json"
    table = LatencyTable.load(path) if reuse_table and path.exists() else None
    if table is not None and (table.form, table.batch_size) != (form, batch_size):
        raise AutoPruneError(f"{path} was measured in {table.form} form at batch {table.batch_size}, not {form} at "
                             f"batch {batch_size}: resume with --latency-form {table.form} --latency-batch-size "
                             f"{table.batch_size}, or start a new --out")
    if table is None:
        console.print(f"measuring the per-layer latency table ({form} form, batch {batch_size}) ...")
        table = build_latency_table(space.structure, macs_space.choices, batch_size=batch_size, form=form,
                                    calibrate=12)  # fitted to 12 candidates timed beside the dense model
        table.save(path)
    return dataclasses.replace(macs_space, metric="latency", target=target_latency, latency_table=table)


