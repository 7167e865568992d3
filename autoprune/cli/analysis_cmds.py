"""``autoprune sample`` (sub-model sampling), ``autoprune sensitivity`` and ``autoprune report``."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autoprune.cli import options as opt
from autoprune.cli.app import _metrics_table, _train, app, out_console
from autoprune.cli.common import (
    Setup,
    above_zero,
    at_least,
    console,
    export_model,
    limit_validation,
    one_budget,
    precision_used,
    start,
    start_or_continue,
    time_side_by_side,
    user_errors,
    with_budget,
)

if TYPE_CHECKING:  # the heavy libraries are imported where a command runs, not for --help
    from autoprune.report import RunReport
    from autoprune.search_spaces import SearchSpace

from autoprune.defaults import DEFAULT_ROUND_TO
from autoprune.errors import AutoPruneError

#: ``sample`` without ``--checkpoint``: the dense training's state after every finished epoch (for a rerun).
DENSE_PARTIAL = "dense.partial.pt"

Space = opt.Space
Criterion = Annotated[str, typer.Option("--criterion", help="Channel ranking: which channels a pruned group keeps.")]
BnBatches = opt.BnBatches
ValBatches = opt.ValBatches
TrainEpochs = opt.DenseEpochs
BatchSize = opt.BatchSize
TensorBoard = Annotated[
    bool, typer.Option("--tensorboard", metavar="", help="Also write TensorBoard scalars to OUT/tensorboard.")
]


def _begin(command: str, run: opt.RunOptions, settings: dict[str, Any], started: float, space: str | None,
           budget: str, target: float, train_epochs: int, batch_size: int, val_batch_size: int | None,
           val_batches: int | None, *, resumable: bool = False,
           ) -> tuple[Setup, RunReport, SearchSpace, list[Any]]:  # fmt: skip
    """What ``sample`` and ``sensitivity`` start from: the run, its report, the space at the budget, the
    trained (or loaded) dense model in eval mode and the validation batches on the device.

    ``resumable``: a rerun of the same command on its unfinished folder continues it (same settings, except
    how it computes); the dense training (without ``--checkpoint``) then continues from ``dense.partial.pt``.
    """
    from autoprune.engine.structure import ModelStructure
    from autoprune.pipelines.oneshot import resolve_space

    s = start_or_continue(command, run, settings) if resumable else start(command, run, settings)
    report = s.report(command, run.model, run.dataset, run.seed, started)
    structure = ModelStructure(s.model, s.input_shape)
    search_space = with_budget(resolve_space(structure, run.model, space, None), budget, target)
    if run.checkpoint is None:
        console.print(f"no --checkpoint: training the model for {train_epochs} epochs first")
        report.set(training=_train(s, train_epochs, 0.05, batch_size, run.seed, run.progress,
                                   checkpoint=s.out / DENSE_PARTIAL if resumable else None))
    s.model.eval()
    size = limit_validation(s, val_batch_size, val_batches)
    val = [(x.to(s.device), y.to(s.device)) for x, y in s.splits.val_loader(size)]
    return s, report, search_space, val


def _tensorboard(enabled: bool, out: Path) -> Any:
    if not enabled:
        return nullcontext(None)
    from autoprune.analysis.tensorboard import TensorBoardLogger

    return TensorBoardLogger(out / "tensorboard")


@app.command("sample")
@user_errors
@opt.run_options()
def sample_cmd(
    run: opt.RunOptions,
    space: Space = None,
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    strategy: Annotated[str, typer.Option("--strategy", help="uniform, importance or sensitivity.")] = "uniform",
    samples: Annotated[int, typer.Option("--samples", help="Candidates to draw and score.")] = 50,
    top_k: Annotated[int, typer.Option("--top-k", help="Best-scored candidates to finetune.")] = 3,
    criterion: Criterion = "l1",
    bn_batches: BnBatches = 10,
    score_without_bn: Annotated[
        bool,
        typer.Option("--score-without-bn/--no-score-without-bn", metavar="",
                     help="Also score every candidate with the dense BN statistics (shows what adaptive BN adds)."),
    ] = True,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Finetuning epochs per top-k.")] = 1,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr")] = 0.01,
    finetune_batches: Annotated[
        int | None, typer.Option("--finetune-batches", help="Training batches per finetuning epoch (default: all).")
    ] = None,
    final_epochs: Annotated[
        int, typer.Option("--final-epochs", help="Then finetune the chosen best this many more epochs on the whole "
                          "training set (default 0: export it as the top-k finetuning left it). With a large --top-k "
                          "and a small --finetune-batches, every candidate is screened by a short finetune first.")
    ] = 0,
    val_batches: ValBatches = None,
    val_batch_size: opt.ValBatchSize = None,
    train_epochs: TrainEpochs = 10,
    batch_size: BatchSize = 128,
    onnx: opt.Onnx = True,
    tensorboard: TensorBoard = False,
) -> None:
    """Sub-model sampling (EagleEye): sample candidates at the budget, score them with adaptive BN on the
    original weights, finetune the top k briefly and export the best.

    Rerun the same command on an unfinished --out to continue it: scored candidates, finished finetunings
    and finished epochs of the final finetuning are kept."""
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from autoprune.engine.importance import IMPORTANCES
    from autoprune.metrics.accuracy import evaluate_accuracy
    from autoprune.pipelines.sampling import SamplingConfig, run_sampling
    from autoprune.report import model_metrics
    from autoprune.training import TrainConfig

    started = time.perf_counter()
    if criterion not in IMPORTANCES:
        raise AutoPruneError(IMPORTANCES.unknown_message(criterion))
    budget, target = one_budget(target_macs=target_macs, target_params=target_params)
    settings.update(budget=budget, target=target)
    at_least(1, samples=samples, top_k=top_k, val_batches=val_batches, val_batch_size=val_batch_size,
             finetune_batches=finetune_batches,
             batch_size=batch_size)
    at_least(0, bn_batches=bn_batches, finetune_epochs=finetune_epochs, final_epochs=final_epochs)
    above_zero(finetune_lr=finetune_lr)
    if run.checkpoint is None:
        at_least(1, train_epochs=train_epochs)
    precision = precision_used(run, trains=run.checkpoint is None or finetune_epochs > 0 or final_epochs > 0,
                               why_not="--checkpoint given, --finetune-epochs 0 and --final-epochs 0")
    config = SamplingConfig(
        samples=samples, top_k=top_k, strategy=strategy, criterion=criterion, bn_batches=bn_batches,
        score_without_bn=score_without_bn, finetune=TrainConfig(epochs=finetune_epochs, lr=finetune_lr,
        batch_size=batch_size, precision=precision), finetune_batches=finetune_batches, final_epochs=final_epochs,
        seed=run.seed,
    )  # fmt: skip
    s, report, search_space, val = _begin("sample", run, settings, started, space, budget, target, train_epochs,
                                          batch_size, val_batch_size, val_batches, resumable=True)
    resume = (s.out / "trials.jsonl").is_file()  # a rerun of an unfinished run: continue it
    if resume:
        console.print(f"continuing the unfinished sample run in {s.out} (scored and finetuned candidates are kept)")
    test_loader = s.splits.test_loader()
    dense = model_metrics(s.model, s.input_shape, test_loader=test_loader, device=s.device)
    dense["val_accuracy"] = evaluate_accuracy(s.model, val, device=s.device).top1
    with _tensorboard(tensorboard, s.out) as tb:
        result = run_sampling(
            s.model, s.input_shape, search_space, train_loader=s.splits.train_loader(batch_size, seed=run.seed),
            val_batches=val, calibration=s.splits.calibration_loader(seed=run.seed), config=config, device=s.device,
            out=s.out, resume=resume, progress=run.progress, on_trial=None if tb is None else tb.on_trial,
            log=lambda msg: console.print(msg),
        )  # fmt: skip
        if tb is not None:
            tb.log_history(_history(result.best.finetune_history), prefix="finetune_best")
            if result.final_history:
                tb.log_history(_history(result.final_history), prefix="finetune_final")
            tb.log_scalars({f"sampling/spearman_{k}": v for k, v in result.correlation.items()
                            if isinstance(v, float)})  # fmt: skip
    pruned = model_metrics(result.model, s.input_shape, test_loader=test_loader, device=s.device)
    files = {**export_model(s, result.model, result.plan, report, onnx=onnx), "trials": "trials.csv"}
    if result.sensitivity is not None:
        result.sensitivity.save_csv(s.out / "sensitivity.csv")
        files["sensitivity"] = "sensitivity.csv"
    if tensorboard:
        files["tensorboard"] = "tensorboard"
    report.set(
        dense=dense, pruned={**pruned, "val_accuracy": result.best.finetuned_val_accuracy if result.final_val_accuracy
                             is None else result.final_val_accuracy},
        counts=result.best.counts, keep_ratios=search_space.ratios(result.best.counts), space=search_space.to_dict(),
        reference={"uniform": {"val_accuracy": result.uniform.accuracy, "macs_ratio": result.uniform.macs_ratio,
                               "note": "adaptive-BN score, not finetuned"}},
        sampling=result.summary(), config={"sampling": config.to_dict(), "device": str(s.device),
                                           "checkpoint": None if run.checkpoint is None else str(run.checkpoint),
                                           "val_batches": len(val)},
        files=files, finetuned=True, resumed=resume,
    )  # fmt: skip
    time_side_by_side(s, report, s.model, result.model, files)
    path = report.write()
    (s.out / DENSE_PARTIAL).unlink(missing_ok=True)
    out_console.print(_metrics_table(f"{run.model}: best of {len(result.candidates)} sampled ({strategy}), finetuned",
                                     {"dense": dense, "pruned": pruned}))  # fmt: skip
    corr = result.correlation.get("adaptive_bn_score_vs_finetuned")
    out_console.print(f"MACs kept: {pruned['macs'] / dense['macs']:.3f}; Spearman(adaptive-BN score, finetuned) over "
                      f"the top {len(result.top)}: {'-' if corr is None else f'{corr:.3f}'}\nreport: {path}")


def _history(data: dict[str, list[float]] | None) -> Any:
    from autoprune.training import TrainHistory

    return TrainHistory(**data) if data else TrainHistory()


def _parse_ratios(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise AutoPruneError(f"--ratios {text!r} must be comma-separated keep ratios, e.g. 0.25,0.5,0.75,1") from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise AutoPruneError(f"--ratios {text!r}: every keep ratio must be in (0, 1], e.g. 0.25,0.5,0.75,1")
    return values


@app.command("sensitivity")
@user_errors
@opt.run_options()
def sensitivity_cmd(
    run: opt.RunOptions,
    ratios: Annotated[
        str, typer.Option("--ratios", help="Comma-separated keep ratios to measure per group.")
    ] = "0.125,0.25,0.5,0.75,1",
    criterion: Criterion = "l1",
    bn_batches: Annotated[
        int, typer.Option("--bn-batches", help="Adaptive BN batches per pruned model (0: dense statistics).")
    ] = 0,
    round_to: opt.RoundTo = DEFAULT_ROUND_TO,
    max_drop: Annotated[
        float, typer.Option("--max-drop", help="Accuracy drop tolerated by the per-group lower bounds (>= 0).")
    ] = 0.01,
    space: Space = None,
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    val_batches: ValBatches = None,
    val_batch_size: opt.ValBatchSize = None,
    train_epochs: TrainEpochs = 10,
    batch_size: BatchSize = 128,
    tensorboard: TensorBoard = False,
) -> None:
    """Layer sensitivity: prune each group alone to each keep ratio; accuracy drop and output KL vs dense.

    Writes sensitivity.csv, sensitivity.png and report.json (per-group lower bounds on the keep ratio and
    sensitivity-guided seed candidates at --target-macs, for searches).
    """
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from autoprune.analysis.plots import plot_sensitivity, save_png
    from autoprune.analysis.sensitivity import keep_ratio_lower_bounds, measure_sensitivity, sensitivity_seed_ratios
    from autoprune.engine.importance import IMPORTANCES
    from autoprune.engine.structure import ModelStructure

    started = time.perf_counter()
    grid = _parse_ratios(ratios)
    if criterion not in IMPORTANCES:
        raise AutoPruneError(IMPORTANCES.unknown_message(criterion))
    budget, target = one_budget(target_macs=target_macs, target_params=target_params)
    settings.update(budget=budget, target=target)
    at_least(1, round_to=round_to, val_batches=val_batches, val_batch_size=val_batch_size, batch_size=batch_size)
    at_least(0, bn_batches=bn_batches, max_drop=max_drop)
    if run.checkpoint is None:
        at_least(1, train_epochs=train_epochs)
    precision_used(run, trains=run.checkpoint is None, why_not="--checkpoint given")
    s, report, search_space, val = _begin("sensitivity", run, settings, started, space, budget, target,
                                          train_epochs, batch_size, val_batch_size, val_batches)
    from autoprune.training import make_progress

    n_groups = len(ModelStructure(s.model, s.input_shape).groups)
    with make_progress(run.progress) as bar, _tensorboard(tensorboard, s.out) as tb:
        task = bar.add_task("sensitivity", total=n_groups * len(set(grid)), status="")

        def on_row(row: Any) -> None:
            bar.update(task, advance=1, status=f"{row.group} @ {row.keep_ratio:g}: drop {row.accuracy_drop:+.3f}")
            if tb is not None:
                tb.log_scalars({f"sensitivity/{row.group}/accuracy_drop": row.accuracy_drop,
                                f"sensitivity/{row.group}/kl": row.kl}, step=round(100 * row.actual_keep_ratio))

        table = measure_sensitivity(s.model, s.input_shape, val, ratios=grid, criterion=criterion,
                                    calibration=s.splits.calibration_loader(seed=run.seed), bn_batches=bn_batches,
                                    round_to=round_to, device=s.device, on_row=on_row)  # fmt: skip
    table.save_csv(s.out / "sensitivity.csv")
    save_png(plot_sensitivity(table), s.out / "sensitivity.png")
    bounds = keep_ratio_lower_bounds(table, max_drop=max_drop)
    seeds = sensitivity_seed_ratios(table, search_space)
    report.set(
        dense={"val_accuracy": table.dense_accuracy}, lower_bounds={"max_drop": max_drop, "keep_ratio": bounds},
        seed_ratios=seeds, space=search_space.to_dict(),
        config={"ratios": list(grid), "criterion": criterion, "bn_batches": bn_batches, "round_to": round_to,
                "val_batches": len(val), "device": str(s.device)},
        files={"table": "sensitivity.csv", "figure": "sensitivity.png", **({"tensorboard": "tensorboard"}
                                                                         if tensorboard else {})},
    )  # fmt: skip
    path = report.write()
    worst = sorted(table.groups, key=lambda g: -max(r.accuracy_drop for r in table.curve(g)))[:3]
    out_console.print(f"dense val accuracy {table.dense_accuracy:.4f}; most sensitive: {', '.join(worst)}")
    out_console.print(f"table: {s.out / 'sensitivity.csv'}\nfigure: {s.out / 'sensitivity.png'}\nreport: {path}")


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run folder of search, sample, sensitivity, prune or extract.")],
    png: Annotated[bool, typer.Option("--png/--no-png", metavar="", help="Also write figures/<name>.png.")] = True,
) -> None:
    """Plots and one self-contained HTML page (images embedded) for a run folder: RUN_DIR/report.html."""
    from autoprune.analysis.html import write_report

    written = write_report(run_dir, png=png)
    for name, path in written.items():
        out_console.print(f"{name}: {path}")
