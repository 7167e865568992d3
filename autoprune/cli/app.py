"""The ``autoprune`` command line (typer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from autoprune.cli import options as opt
from autoprune.cli.common import (
    Setup,
    above_zero,
    at_least,
    console,
    export_model,
    one_budget,
    parse_keep_ratios,
    precision_used,
    start,
    start_or_continue,
    time_side_by_side,
    user_errors,
)
from autoprune.defaults import DEFAULT_ROUND_TO, STRUCTURED
from autoprune.errors import AutoPruneError

app = typer.Typer(
    name="autoprune",
    help="Search-based automatic structured pruning for PyTorch models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out_console = Console()

MASKS_DO_NOT_SPEED_UP = (
    "mask granularities (kernel, vector, fine) zero weights but keep dense shapes: dense CPU/GPU kernels "
    "do the same work, so latency does not drop (see latency_ratio); only sparse kernels could use them"
)


def _metrics_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    table.add_column("model")
    for col in ("accuracy", "MACs", "params", "latency (ms, batch 1)"):
        table.add_column(col, justify="right")
    for name, m in rows.items():
        acc = m.get("accuracy")
        table.add_row(
            name,
            f"{acc:.4f}" if acc is not None else "-",
            f"{m['macs'] / 1e6:.3f}M",
            f"{m['params'] / 1e6:.4f}M",
            f"{m['latency_ms']:.3f}",
        )
    return table


def _run_settings(s: Setup, checkpoint: Path | None) -> dict[str, object]:
    """The settings of the run itself for ``config`` in report.json: the device used and the checkpoint."""
    return {"device": str(s.device), "checkpoint": None if checkpoint is None else str(checkpoint)}


def _train(s: Setup, epochs: int, lr: float, batch_size: int, seed: int, progress: bool,
           checkpoint: Path | None = None) -> dict[str, object]:  # fmt: skip
    """Dense training of ``s.model``; with ``checkpoint``, resumable after every finished epoch."""
    from autoprune.training import TrainConfig, train

    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, precision=s.precision)
    started = time.perf_counter()

    def epoch_line(epoch: int, _model: object) -> None:  # without progress bars, one line per finished epoch
        console.print(f"train: epoch {epoch + 1}/{epochs} finished ({time.perf_counter() - started:.0f} s)",
                      highlight=False)

    history = train(
        s.model,
        s.splits.train_loader(batch_size, seed=seed),
        config,
        val_loader=s.splits.val_loader(),
        device=s.device,
        progress=progress,
        description="train",
        checkpoint=checkpoint,
        on_epoch_end=None if progress else epoch_line,
    )
    return {"config": config.to_dict(), "history": history.to_dict()}


@app.command("train")
@user_errors
@opt.run_options()
def train_cmd(
    run: opt.RunOptions,
    epochs: opt.TrainEpochs = 10,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (SGD, cosine).")] = 0.05,
    batch_size: opt.BatchSize = 128,
) -> None:
    """Train a model on a dataset; writes model.pt (weights-only checkpoint) and report.json.

    Every finished epoch is kept (model.partial.pt): rerun the same command to resume an interrupted run.
    """
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from autoprune.models import save_checkpoint
    from autoprune.report import model_metrics

    started = time.perf_counter()
    if epochs < 1:
        raise AutoPruneError(f"--train-epochs {epochs} trains nothing: give at least 1")
    above_zero(lr=lr)
    at_least(1, batch_size=batch_size)
    # a rerun continues an unfinished run: same settings, except those that do not change what is trained
    s = start_or_continue("train", run, settings, verb="train")
    report = s.report("train", run.model, run.dataset, run.seed, started)
    partial = s.out / "model.partial.pt"  # after every finished epoch: rerun the same command to resume there
    if partial.is_file():
        console.print(f"resuming {partial} after its last finished epoch")
    training = _train(s, epochs, lr, batch_size, run.seed, run.progress, checkpoint=partial)
    meta = {"model": run.model, "dataset": run.dataset, "num_classes": s.splits.num_classes,
            "in_channels": s.splits.in_channels, "image_size": list(s.splits.image_size)}
    save_checkpoint(s.model, s.out / "model.pt", meta)
    partial.unlink(missing_ok=True)
    dense = model_metrics(s.model, s.input_shape, test_loader=s.splits.test_loader(), device=s.device)
    report.set(config=_run_settings(s, run.checkpoint), dense=dense, training=training,
               files={"checkpoint": "model.pt"})
    path = report.write()
    out_console.print(_metrics_table(f"{run.model} on {run.dataset}", {"trained": dense}))
    out_console.print(f"checkpoint: {s.out / 'model.pt'}\nreport: {path}")


@app.command("prune")
@user_errors
@opt.run_options()
def prune_cmd(
    run: opt.RunOptions,
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    keep_ratios: Annotated[
        str | None,
        typer.Option(
            "--keep-ratios",
            help="Per-group keep ratios instead of a budget: a JSON object {group: ratio} or a .json file "
            "holding one (group names: `autoprune groups`). Groups not listed stay whole.",
        ),
    ] = None,
    criterion: Annotated[
        str, typer.Option("--criterion", help="l1, l2, bn_scale, taylor, activation_mean, apoz, random.")
    ] = "l1",
    granularity: Annotated[
        str, typer.Option("--granularity", help="channel (physically removed), kernel, vector, fine (masks).")
    ] = STRUCTURED,
    scope: Annotated[str, typer.Option("--scope", help="local (uniform ratio) or global (one ranking).")] = "local",
    round_to: opt.RoundTo = DEFAULT_ROUND_TO,
    rounds: Annotated[int, typer.Option("--rounds", help="Gradual pruning in k prune+finetune rounds.")] = 1,
    train_epochs: opt.DenseEpochs = 10,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Finetuning epochs per round.")] = 2,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr")] = 0.01,
    batch_size: opt.BatchSize = 128,
    onnx: opt.Onnx = True,
) -> None:
    """Standard pipeline: train (or load) -> prune to a budget -> finetune, in one or more rounds."""
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from autoprune.engine.importance import IMPORTANCES
    from autoprune.engine.pruner import PruneConfig
    from autoprune.engine.structure import ModelStructure
    from autoprune.pipelines.standard import StandardConfig, run_standard
    from autoprune.report import model_metrics
    from autoprune.training import TrainConfig

    started = time.perf_counter()
    IMPORTANCES.get(criterion)  # an unknown name fails now, not after training
    above_zero(finetune_lr=finetune_lr)
    at_least(1, batch_size=batch_size, rounds=rounds, round_to=round_to)
    at_least(0, finetune_epochs=finetune_epochs)
    budget, value = one_budget(target_macs=target_macs, target_params=target_params, keep_ratios=keep_ratios)
    precision = precision_used(run, trains=run.checkpoint is None or finetune_epochs > 0,
                               why_not="--checkpoint given and --finetune-epochs 0")
    settings.update(budget=budget, target=None if budget == "keep_ratios" else value)
    ratios = parse_keep_ratios(keep_ratios) if keep_ratios is not None else None
    prune_config = PruneConfig(
        target_macs=value if budget == "target_macs" else None,
        target_params=target_params,
        keep_ratios=ratios,
        criterion=criterion,
        granularity=granularity,
        scope=scope,  # type: ignore[arg-type]
        round_to=round_to,
        seed=run.seed,
    )
    config = StandardConfig(
        prune=prune_config,
        finetune=TrainConfig(epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size, precision=precision),
        rounds=rounds,
    )
    s = start("prune", run, settings)
    report = s.report("prune", run.model, run.dataset, run.seed, started)
    report.set(config={**config.to_dict(), **_run_settings(s, run.checkpoint)})
    if ratios is not None:  # check group names before spending time on training
        ModelStructure(s.model, s.input_shape).keep_counts(ratios, round_to=1)
    if run.checkpoint is None:
        console.print(f"no --checkpoint: training {run.model} for {train_epochs} epochs first")
        report.set(training=_train(s, train_epochs, 0.05, batch_size, run.seed, run.progress))
    effective = granularity != STRUCTURED
    test_loader = s.splits.test_loader()
    dense = model_metrics(s.model, s.input_shape, test_loader=test_loader, device=s.device, effective=effective)
    result = run_standard(
        s.model,
        s.input_shape,
        config,
        train_loader=s.splits.train_loader(batch_size, seed=run.seed),
        val_loader=s.splits.val_loader(),
        calibration=s.splits.calibration_loader(seed=run.seed),
        device=s.device,
        progress=run.progress,
        log=lambda msg: console.print(msg),
    )
    pruned = model_metrics(result.model, s.input_shape, test_loader=test_loader, device=s.device, effective=effective)
    files = export_model(s, result.model, result.plan, report, onnx=onnx)
    report.set(
        dense=dense,
        pruned=pruned,
        granularity=granularity,
        rounds=[r.__dict__ for r in result.rounds],
        keep_ratios=result.plan.keep_ratios,
        files=files,
        finetuned=finetune_epochs > 0,
    )
    if effective:
        report.set(
            effective_macs_ratio=pruned["effective_macs"] / dense["macs"],
            note=MASKS_DO_NOT_SPEED_UP,
        )
    time_side_by_side(s, report, s.model, result.model, files)
    path = report.write()
    out_console.print(_metrics_table(f"{run.model} on {run.dataset}: {granularity} pruning, {criterion}",
                                     {"dense": dense, "pruned": pruned}))
    data = report.to_dict()
    ratio = data.get("effective_macs_ratio", data.get("macs_ratio"))
    budget_text = ("explicit --keep-ratios" if budget == "keep_ratios" else
                   f"target {value:g} of the {'MACs' if budget == 'target_macs' else 'params'}")
    out_console.print(f"MACs kept: {ratio:.3f} ({budget_text}); params kept: {data.get('params_ratio', 1.0):.3f}; "
                      f"latency ratio {data.get('latency_ratio', float('nan')):.3f}")
    if effective:
        out_console.print(f"[yellow]note:[/] {MASKS_DO_NOT_SPEED_UP}")
    out_console.print(f"report: {path}")


def _version_callback(value: bool) -> None:
    if value:
        from autoprune import __version__

        out_console.print(f"autoprune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", metavar="", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Search-based automatic structured pruning for PyTorch models."""


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
