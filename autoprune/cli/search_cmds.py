"""``autoprune search``: search per-group keep ratios over a supernet and export the winner, no finetuning."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
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
    one_budget,
    start,
    user_errors,
    with_budget,
)
from autoprune.cli.runfolder import adopt_recorded
from autoprune.cli.search_support import (
    jsonable,
    parse_searcher_options,
    plot_figures,
    side_by_side,
    spawn_workers,
    tensorboard_logger,
    wait_workers,
)
from autoprune.cli.supernet_cmds import BnBatches, Space, dense_model_of, export_subnet, train_dense_once
from autoprune.defaults import DEFAULT_TOP_K
from autoprune.errors import AutoPruneError

SearcherName = Annotated[
    str, typer.Option("--searcher", help="tpe, cmaes, gp, qmc, nsga2 (Optuna; nsga2: Pareto front), ddpg, td3, sac, "
                      "ppo (Stable-Baselines3), greedy (slimming), random.")
]


#: The settings a resumed search must share with the run it continues (--trials may grow, --workers change).
RESUME_DEFINING = ("model", "dataset", "data_dir", "image_size", "checkpoint", "supernet", "space", "budget", "target",
                   "latency_batch_size", "latency_form", "searcher", "rungs", "pruner", "storage", "study_name",
                   "searcher_option", "supernet_epochs", "train_epochs", "bn_batches", "val_batch_size", "val_batches",
                   "seed")


#: Options that, left out of a --resume, take the value the run recorded.
RESUME_ADOPTS = ("checkpoint", "supernet", "data_dir", "space", "image_size", "rungs", "pruner", "storage",
                 "study_name", "val_batch_size", "val_batches", "target_macs", "target_params", "target_latency")


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
    workers: Annotated[int, typer.Option("--workers", help="Processes on one Optuna study (this machine).")] = 1,
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
    from autoprune.pipelines.search import pick_winner, search_supernet
    from autoprune.report import binomial_se, model_metrics
    from autoprune.search import SEARCHERS, TrialLog, fidelity_rungs, pareto_front
    from autoprune.search.base import best_trial
    from autoprune.search_spaces.budget import budget_use_summary
    from autoprune.training import TrainConfig, train

    started = time.perf_counter()
    SEARCHERS.get(searcher)  # an unknown name fails before any work
    if resume and run.out is not None:  # options left out take the recorded run's values
        adopted = adopt_recorded(run.out, settings, RESUME_ADOPTS)
        run.checkpoint, supernet, data_dir = (_path(settings[k]) for k in ("checkpoint", "supernet", "data_dir"))
        space, run.image_size, rungs, pruner, storage, study_name, val_batch_size, val_batches = (
            settings[k] for k in ("space", "image_size", "rungs", "pruner", "storage", "study_name", "val_batch_size",
                                  "val_batches"))
        target_macs, target_params, target_latency = (
            settings[k] for k in ("target_macs", "target_params", "target_latency"))
        if adopted:
            console.print(f"resuming with the run's own {', '.join(adopted)}", highlight=False)
    budget, target = one_budget(target_macs=target_macs, target_params=target_params, target_latency=target_latency)
    settings.update(budget=budget, target=target)
    at_least(1, top_k=top_k, rescore_bn_batches=rescore_bn_batches, trials=trials,
             latency_batch_size=latency_batch_size, val_batch_size=val_batch_size, val_batches=val_batches)
    at_least(0, bn_batches=bn_batches, finetune_epochs=finetune_epochs)
    if supernet is None:
        at_least(1, supernet_epochs=supernet_epochs)
        if run.checkpoint is None:
            at_least(1, train_epochs=train_epochs)
    if resume and run.overwrite:
        raise AutoPruneError("give --resume (continue the run in --out) or --overwrite (replace it), not both")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial drowns the progress bar
    if workers < 1:
        raise AutoPruneError(f"--workers {workers} must be >= 1")
    study = SEARCHERS.get(searcher).study_based
    if workers > 1 and not study:
        raise AutoPruneError(f"--workers {workers} needs an Optuna searcher (tpe, cmaes, gp, nsga2) that shares "
                             f"a study; {searcher!r} runs in one process")
    options = parse_searcher_options(searcher_option or [])
    if rungs is None:
        rungs = 3 if pruner not in (None, "none") else 1
    if rungs < 1:
        raise AutoPruneError(f"--rungs {rungs} must be >= 1 (1: full validation only)")
    if pruner is not None:
        if not study:
            raise AutoPruneError(f"--pruner applies to Optuna searchers; {searcher!r} has none (drop --pruner)")
        options["pruner"] = pruner
    s = start("search", run, settings, mode="worker" if worker else "resume" if resume else "new",
              defining=RESUME_DEFINING)
    log = TrialLog(s.out)
    net, search_space, dense_model = _supernet_and_space(s, run.model, run.dataset, supernet, space, run.checkpoint,
                                                         run.seed, run.progress, supernet_epochs, train_epochs,
                                                         bn_batches)
    with net.gates.detached():  # the latency table times the plain model, without the supernet's hooks
        search_space = _retarget(s, search_space, budget, target, latency_batch_size, latency_form, resume or worker)
    if study:
        options.setdefault("storage", storage or f"sqlite:///{(s.out / 'study.db').resolve()}")
        options.setdefault("study_name", study_name or f"autoprune-{searcher}")
        options.setdefault("total_trials", trials)
    elif storage is not None or study_name is not None:
        raise AutoPruneError(f"--storage/--study-name apply to Optuna searchers; {searcher!r} keeps no study")
    procs = []
    if workers > 1 and not worker:
        if resume:
            log.repair()
        else:
            log.reset()
        procs = spawn_workers(workers - 1, s.out, supernet or s.out / "supernet.pt", options)
    on_trial = tensorboard_logger(s.out) if tensorboard else None
    val_batch_size = limit_validation(s, val_batch_size, val_batches)
    n_val = math.ceil(len(s.splits.val) / val_batch_size)  # type: ignore[arg-type]
    outcome = search_supernet(
        net, search_space, s.splits, searcher=searcher, trials=trials, seed=run.seed,
        rungs=fidelity_rungs(n_val, rungs) if rungs > 1 else None, bn_batches=bn_batches, options=options,
        val_batch_size=val_batch_size,
        out=s.out, resume=resume or worker or workers > 1, progress=run.progress and not worker, on_trial=on_trial,
        latency_batch_size=latency_batch_size if target_latency is not None else None, latency_form=latency_form,
        device=s.device,
        repair_log=not worker and workers == 1, extract=False,  # the winner is read from the shared log below
    )  # fmt: skip
    if worker:
        return
    wait_workers(procs)
    if outcome.result.interrupted:
        console.print(f"[yellow]interrupted[/] after {len(outcome.result.trials)} trials; every finished trial is in "
                      f"{log.csv}. Continue with the same command plus --resume (and --out {s.out}).")
        raise typer.Exit(130)
    all_trials = log.read()
    if not any(t.state == "complete" and t.feasible for t in all_trials):
        raise AutoPruneError(f"no trial of the search completed ({len(all_trials)} trials, see {log.csv}); "
                             "check the errors there, then rerun with --resume")
    # The winner is fixed on validation data only (top-k re-scored with a larger calibration, and the
    # uniform candidate); the test split is read below, once, for the report.
    chosen = pick_winner(net, search_space, s.splits, all_trials, top_k=top_k, seed=run.seed, device=s.device,
                         rescore_bn_batches=rescore_bn_batches or 4 * max(bn_batches, 1),
                         val_batch_size=val_batch_size)  # fmt: skip
    choice = chosen.choice
    counts = chosen.counts
    winner = chosen.extract(net)
    uniform_model = net.extract(choice.uniform.score.counts, calibration=chosen.calibration,
                                bn_batches=len(chosen.calibration))
    report = s.report("search", run.model, run.dataset, run.seed, started)
    test_loader = s.splits.test_loader()
    dense: dict[str, Any] = (
        model_metrics(dense_model, s.input_shape, test_loader=test_loader, device=s.device)
        if dense_model is not None else {"macs": net.structure.dense_macs, "params": net.structure.dense_params})
    if dense_model is not None:  # on the validation split too, beside the winner's re-scored val accuracy
        from autoprune.metrics import evaluate_accuracy

        n_val = len(s.splits.val)  # type: ignore[arg-type]
        dense["val_accuracy"] = evaluate_accuracy(dense_model, s.splits.val_loader(), device=s.device).top1
        dense["val_accuracy_se"] = binomial_se(dense["val_accuracy"], n_val)
    pruned = model_metrics(winner.to(s.device), s.input_shape, test_loader=test_loader, device=s.device)
    uniform = model_metrics(uniform_model.to(s.device), s.input_shape, test_loader=test_loader, device=s.device)
    files = export_subnet(net, counts, winner, s, report, onnx=onnx)
    front = pareto_front(all_trials)
    (s.out / "pareto.json").write_text(json.dumps([t.to_dict() for t in front], indent=1))
    files["pareto"] = "pareto.json"
    files.update(trials="trials.csv", trials_log="trials.jsonl")
    if finetune_epochs > 0:
        tuned = copy.deepcopy(winner)
        train(tuned, s.splits.train_loader(128, seed=run.seed), TrainConfig(epochs=finetune_epochs, lr=0.01),
              val_loader=s.splits.val_loader(), device=s.device, progress=run.progress, description="finetune")
        report.set(finetuned_metrics=model_metrics(tuned, s.input_shape, test_loader=test_loader, device=s.device),
                   finetune_epochs=finetune_epochs)
    summary = outcome.result.summary()
    best = best_trial(all_trials)
    summary.update(trials=len(all_trials), best=None if best is None else best.to_dict(),
                   pareto=[t.to_dict() for t in front])
    space_counts = {k: v for k, v in counts.items() if k in search_space.names}
    evaluated = [t.counts for t in all_trials if t.result is not None and t.feasible]
    report.set(
        dense=dense, pruned=pruned, uniform=uniform, counts=counts, keep_ratios=search_space.ratios(space_counts),
        reference=outcome.reference, search=summary, searcher_state=outcome.searcher_state,
        evaluator=outcome.evaluator, space=search_space.to_dict(), files=files, finetuned=False,
        **{k: v for k, v in choice.to_dict().items() if k != "uniform"}, uniform_rescored=choice.uniform.to_dict(),
        budget_use={**search_space.budget_use(space_counts),
                    "evaluated": budget_use_summary(search_space, evaluated)},
        config={"searcher": searcher, "trials": trials, "rungs": rungs, "options": jsonable(options),
                "workers": workers, "bn_batches": bn_batches, "val_batch_size": val_batch_size,
                "top_k": top_k, "rescore_bn_batches": len(chosen.calibration),
                "latency_form": latency_form,
                "supernet": str(supernet or s.out / "supernet.pt"),
                "device": str(s.device), "checkpoint": None if run.checkpoint is None else str(run.checkpoint)},
    )  # fmt: skip
    path = report.write()
    files.update(plot_figures(s.out))
    report.set(files=files)
    path = report.write()
    print(side_by_side(run.model, len(all_trials), searcher, dense, uniform, pruned, choice, search_space))
    print(f"{choice.statement}\nreport: {path}  (HTML page and figures: autoprune report {s.out})")


def _supernet_and_space(
    s: Setup, model: str, dataset: str, supernet: Path | None, space: str | None, checkpoint: Path | None,
    seed: int, progress: bool, supernet_epochs: int, train_epochs: int, bn_batches: int,
) -> tuple[Supernet, SearchSpace, nn.Module | None]:
    """Load the given supernet, or build one in OUT/supernet.pt (training the dense model first if needed).

    Also returns a copy of the dense model (trained or from --checkpoint) for the report, if there is one.
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
    dense_file = checkpoint if checkpoint is not None else train_dense_once(
        s, model, dataset, train_epochs, 128, seed, progress, s.report("search", model, dataset, seed))
    dense = copy.deepcopy(s.model)
    search_space = resolve_space(ModelStructure(s.model, s.input_shape), model, space, None)
    run = build_supernet(
        s.model, s.input_shape, search_space, s.splits.train_loader(128, seed=seed),
        SupernetConfig(epochs=supernet_epochs, seed=seed), calibration=s.splits.calibration_loader(seed=seed),
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
        table = build_latency_table(space.structure, macs_space.choices, batch_size=batch_size, form=form)
        table.save(path)
    return dataclasses.replace(macs_space, metric="latency", target=target_latency, latency_table=table)


