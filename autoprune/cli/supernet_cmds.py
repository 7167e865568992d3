"""``autoprune supernet`` (train once) and ``autoprune extract`` (a sub-network, no finetuning)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:  # the heavy libraries are imported where a command runs, not for --help
    from torch import nn

    from autoprune.evaluate import SupernetEvaluator
    from autoprune.report import RunReport
    from autoprune.search_spaces import SearchSpace
    from autoprune.supernet import Supernet

import typer

from autoprune.cli import options as opt
from autoprune.cli.app import _metrics_table, app, out_console
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
    time_side_by_side,
    user_errors,
    with_budget,
)
from autoprune.cli.runfolder import HOW_NOT_WHAT
from autoprune.cli.supernet_start import dense_model_of, load_init_supernet, train_dense_once
from autoprune.errors import AutoPruneError

Space = opt.Space
BnBatches = opt.BnBatches


def _reference_points(evaluator: SupernetEvaluator, space: SearchSpace) -> dict[str, Any]:
    points = {"largest": space.largest(), "smallest": space.smallest(), "uniform_at_target": space.uniform(1.0)}
    out = {}
    for name, counts in points.items():
        r = evaluator.evaluate(counts)
        out[name] = {"val_accuracy": r.accuracy, "macs_ratio": r.macs_ratio, "counts": r.counts}
    return out


@app.command("supernet")
@user_errors
@opt.run_options()
def supernet_cmd(
    run: opt.RunOptions,
    space: Space = None,
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    epochs: Annotated[
        int, typer.Option("--supernet-epochs", "--epochs", help="Epochs of sandwich-rule supernet training.")
    ] = 5,
    num_random: Annotated[int, typer.Option("--num-random", help="Random sub-networks per step.")] = 2,
    sample_near: Annotated[
        str | None, typer.Option("--sample-near", help="LOW:HIGH fractions of the dense MACs (or params): draw the "
                                 "random sub-networks near budgets in this range (a random shape projected onto a "
                                 "budget drawn from it) instead of over the whole space, e.g. 0.2:0.4 for searches "
                                 "at 20-40%.")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (SGD, cosine).")] = 0.02,
    teacher: Annotated[
        str, typer.Option("--teacher", help="Soft predictions the smaller sub-networks learn: 'largest' (in-place "
                          "distillation), 'dense' (a frozen copy of the dense model; the largest sub-network "
                          "learns them too, beside the labels) or 'none' (no distillation: every sub-network "
                          "learns the labels).")
    ] = "largest",
    criterion: Annotated[str, typer.Option("--criterion", help="Channel ranking criterion.")] = "l1",
    init_supernet: Annotated[
        Path | None, typer.Option("--init-supernet", help="Start from this trained supernet (its weights and its "
                                  "channel ranking) instead of a dense --checkpoint, e.g. to specialise it to a "
                                  "budget with --sample-near and a lower --lr. --teacher dense then distils from "
                                  "its full model.")
    ] = None,
    train_epochs: opt.DenseEpochs = 10,
    batch_size: opt.BatchSize = 128,
    bn_batches: BnBatches = 10,
) -> None:
    """Train a weight-sharing supernet once (sandwich rule + in-place distillation); rerun to resume.

    Without --checkpoint the dense model is trained first and kept as OUT/dense.pt; a rerun with the same
    settings on the same --out continues where it stopped (dense model and finished epochs are kept).
    """
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    from autoprune.engine.importance import IMPORTANCES
    from autoprune.evaluate import SupernetEvaluator
    from autoprune.pipelines.oneshot import build_supernet, resolve_space
    from autoprune.report import model_metrics
    from autoprune.supernet import SupernetConfig
    from autoprune.supernet.sandwich import TEACHERS

    if criterion not in IMPORTANCES:
        raise AutoPruneError(IMPORTANCES.unknown_message(criterion))
    budget, target = one_budget(target_macs=target_macs, target_params=target_params)
    settings.update(budget=budget, target=target)
    at_least(1, supernet_epochs=epochs, batch_size=batch_size)
    above_zero(lr=lr)
    at_least(0, num_random=num_random, bn_batches=bn_batches)
    if run.checkpoint is not None and init_supernet is not None:
        raise AutoPruneError(f"--checkpoint {run.checkpoint} and --init-supernet {init_supernet} both given: a "
                             "supernet starts from one of them; drop one")
    if run.checkpoint is None and init_supernet is None:
        at_least(1, train_epochs=train_epochs)
    choices = (*TEACHERS, "none")  # none: SupernetConfig(distill=False)
    if teacher not in choices:
        raise AutoPruneError(f"--teacher {teacher!r}: use one of {', '.join(choices)}")
    precision = precision_used(run, trains=True, why_not="")
    config = SupernetConfig(epochs=epochs, lr=lr, num_random=num_random, seed=run.seed,
                            teacher="largest" if teacher == "none" else teacher, distill=teacher != "none",
                            precision=precision)
    from autoprune.envs import parse_target_range

    near = None if sample_near is None else parse_target_range(sample_near)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and run.checkpoint is None and init_supernet is None:
        raise AutoPruneError("under torchrun pass --checkpoint (a trained dense model), so that every process "
                             "ranks channels of the same weights; train it first with `autoprune train`")
    rank, world = _init_distributed(run.device)
    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 claims the run folder first: a folder half-written by it is not another run's
    s = start("supernet", run, settings, mode="continue",  # more epochs continue the same run
              defining=tuple(k for k in settings if k not in (*HOW_NOT_WHAT, "epochs", "bn_batches")))
    if world > 1 and rank == 0:
        dist.barrier()
    report = s.report("supernet", run.model, run.dataset, run.seed)
    ckpt = s.out / "supernet.pt"
    scores = None
    if init_supernet is not None:
        dense_file, scores = load_init_supernet(init_supernet, s)
    elif run.checkpoint is not None:
        dense_file = run.checkpoint
    else:
        dense_file = train_dense_once(s, run.model, run.dataset, train_epochs, batch_size, run.seed, run.progress,
                                      report)
    from autoprune.engine.structure import ModelStructure

    search_space = with_budget(resolve_space(ModelStructure(s.model, s.input_shape), run.model, space, None), budget,
                               target)
    test_loader = s.splits.test_loader()
    reference = s.model
    if init_supernet is not None:  # the report's dense model is the one the first supernet started from
        reference = dense_model_of({"dense_checkpoint": str(dense_file)}, run.model, s) or s.model
    dense = model_metrics(reference, s.input_shape, test_loader=test_loader, device=s.device)
    if ckpt.exists():
        console.print(f"resuming the supernet in {ckpt}")
    if world > 1:
        sampler: DistributedSampler[Any] = DistributedSampler(s.splits.train, num_replicas=world, rank=rank,
                                                              seed=run.seed)
        train_loader: Any = DataLoader(s.splits.train, batch_size=batch_size, sampler=sampler)
    else:
        train_loader = s.splits.train_loader(batch_size, seed=run.seed)
    built = build_supernet(
        s.model, s.input_shape, search_space, train_loader, config,
        criterion=criterion, calibration=s.splits.calibration_loader(seed=run.seed), checkpoint=ckpt,
        meta={"model": run.model, "dataset": run.dataset, "num_classes": s.splits.num_classes,
              "in_channels": s.splits.in_channels, "image_size": list(s.splits.image_size),
              "dense_checkpoint": str(Path(dense_file).resolve()),
              **({"init_supernet": str(init_supernet.resolve())} if init_supernet is not None else {})},
        device=s.device, progress=run.progress and rank == 0,
        on_epoch=None if run.progress else _epoch_line(config.epochs, config.distill), sample_near=near,
        scores=scores,
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return
        report.set(distributed={"world_size": world, "backend": "nccl" if s.device.type == "cuda" else "gloo"})
    evaluator = SupernetEvaluator(built.supernet, s.splits.val_loader(), s.splits.calibration_loader(seed=run.seed),
                                  bn_batches=bn_batches, device=s.device)
    points = _reference_points(evaluator, built.space)
    report.set(dense=dense, config={"supernet": config.to_dict(), "criterion": criterion, "device": str(s.device),
                                    "sample_near": None if near is None else list(near)},
               space=built.space.to_dict(), history=built.history.__dict__, subnets=points,
               files={"supernet": "supernet.pt", **({"checkpoint": "dense.pt"} if run.checkpoint is None else {})},
               evaluator=evaluator.stats.to_dict())
    path = report.write()
    for name, p in points.items():
        out_console.print(f"{name:18s} MACs {p['macs_ratio']:.3f}  val accuracy {p['val_accuracy']:.4f}")
    out_console.print(f"supernet: {ckpt}\nreport: {path}")


@app.command("extract")
@user_errors
@opt.run_options(without=("download", "checkpoint", "progress", "precision"))
def extract_cmd(
    run: opt.RunOptions,
    supernet: Annotated[Path, typer.Option("--supernet", help="supernet.pt written by `autoprune supernet`.")],
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    keep_ratios: Annotated[
        str | None,
        typer.Option("--keep-ratios", help="Per-group keep ratios instead of a budget (JSON object or .json file), "
                     "each within the space's bounds for its group; taken as given (nearest allowed count), groups "
                     "not listed stay whole."),
    ] = None,
    from_run: Annotated[
        Path | None, typer.Option("--from-run", help="A search run folder: export one of its trials.")
    ] = None,
    trial: Annotated[
        int | None, typer.Option("--trial", help="With --from-run: the trial number (default: the run's winner "
                                 "from report.json; any Pareto point of pareto.json works).")
    ] = None,
    bn_batches: BnBatches = 10,
    onnx: opt.Onnx = True,
) -> None:
    """Export one sub-network of a supernet with its shared weights (no finetuning).

    Give one of: a budget (--target-macs, default 0.5, or --target-params: the widest uniform sub-network
    within it), --keep-ratios, or --from-run (with --trial).
    """
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from autoprune.models import build_model
    from autoprune.pipelines.oneshot import resolve_space
    from autoprune.report import model_metrics, recalibrated
    from autoprune.search_spaces import space_from_dict
    from autoprune.supernet import Supernet

    budget, value = one_budget(target_macs=target_macs, target_params=target_params, keep_ratios=keep_ratios,
                               from_run=from_run)
    settings.update(budget=budget, target=value if budget.startswith("target") else None)
    if trial is not None and from_run is None:
        raise AutoPruneError("--trial needs --from-run RUN_DIR (the search run folder holding trials.jsonl)")
    at_least(0, bn_batches=bn_batches)
    s = start("extract", run, settings, checkpoint=False)
    net, meta = Supernet.load(supernet, build_model(run.model, num_classes=s.splits.num_classes,
                                                    in_channels=s.splits.in_channels))
    space = space_from_dict(meta["space"], net.structure) if "space" in meta else resolve_space(
        net.structure, run.model, None, None)
    if budget == "from_run":
        counts = _trial_counts(value, trial)
    elif budget == "keep_ratios":
        counts = explicit_counts(space, parse_keep_ratios(value))
    else:
        counts = with_budget(space, budget, value).project([1.0] * len(space.groups))
    report = s.report("extract", run.model, run.dataset, run.seed)
    test_loader = s.splits.test_loader()
    dense: dict[str, Any] = {"macs": net.structure.dense_macs, "params": net.structure.dense_params}
    dense_model = dense_model_of(meta, run.model, s)
    if dense_model is not None:
        dense = model_metrics(dense_model, s.input_shape, test_loader=test_loader, device=s.device)
    else:
        untrained = build_model(run.model, num_classes=s.splits.num_classes, in_channels=s.splits.in_channels)
        dense.update(latency_ms=model_metrics(untrained, s.input_shape)["latency_ms"])
    calibration = list(islice(s.splits.calibration_loader(seed=run.seed), bn_batches)) if bn_batches else None
    if dense_model is not None and calibration:  # scored as the sub-network is too (own statistics may be stale)
        again = recalibrated(dense_model, calibration, test_loader, device=s.device)
        if again is not None:
            dense["recalibrated"] = again
    pruned_model = net.extract(counts, calibration=calibration, bn_batches=bn_batches)
    pruned = model_metrics(pruned_model.to(s.device), s.input_shape, test_loader=test_loader, device=s.device)
    files = export_subnet(net, counts, pruned_model, s, report, onnx=onnx)
    report.set(dense=dense, pruned=pruned, counts=counts, keep_ratios=space.ratios(counts), files=files,
               supernet=str(supernet), finetuned=False,
               config={"budget": budget, "target": value if budget.startswith("target") else None,
                       "keep_ratios": keep_ratios, "from_run": None if from_run is None else str(from_run),
                       "trial": trial, "bn_batches": bn_batches, "supernet": str(supernet), "device": str(s.device)})
    time_side_by_side(s, report, dense_model, pruned_model, files)
    path = report.write()
    out_console.print(_metrics_table(f"{run.model}: sub-network of {supernet.name} (no finetuning)",
                                     {"dense": dense, "pruned": pruned} if "accuracy" in dense else {"pruned": pruned}))
    out_console.print(f"MACs kept: {pruned['macs'] / dense['macs']:.3f}\nreport: {path}")


def explicit_counts(space: SearchSpace, ratios: dict[str, float]) -> dict[str, int]:
    """Counts for explicit ``--keep-ratios``, taken as given: the nearest allowed count of each listed group.

    Groups not listed stay whole. A group the space does not search, or a ratio outside the space's bounds
    for its group, is refused (naming the bounds): an explicit request is never rewritten to fit a budget.
    """
    by_name = {g.name: g for g in space.groups}
    counts = {g.name: g.max_count for g in space.groups}
    for name, ratio in ratios.items():
        group = by_name.get(name)
        if group is None:
            raise AutoPruneError(f"--keep-ratios: group {name!r} is not searched by the supernet's space; its groups "
                                 f"are {', '.join(by_name)} (see `autoprune groups`)")
        low = group.ratio(group.min_count)
        if not low - 1e-9 <= ratio <= 1.0 + 1e-9:
            raise AutoPruneError(f"--keep-ratios {name}={ratio:g} is outside the space's bounds [{low:.3g}, 1] for "
                                 f"that group (counts {group.min_count}..{group.max_count} of {group.channels}); "
                                 "give a ratio within them")
        counts[name] = min(group.choices, key=lambda c: (abs(c - ratio * group.channels), -c))
    return counts


def _trial_counts(run: Path, number: int | None) -> dict[str, int]:
    """The kept counts of trial ``number`` of the search recorded in ``run``.

    Default: the run's winner as ``report.json`` records it (fixed by re-scoring, possibly the uniform
    candidate); without a report (an unfinished search), the trial with the best search score.
    """
    import json

    from autoprune.search import TrialLog
    from autoprune.search.base import best_trial

    trials = TrialLog(run).read()
    if not trials:
        raise AutoPruneError(f"--from-run {run}: no trials.jsonl there; pass the folder of an `autoprune search`")
    report = run / "report.json"
    if number is None and report.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            return {str(k): int(v) for k, v in json.loads(report.read_text())["winner"]["counts"].items()}
    if number is None:
        chosen = best_trial(trials)
    else:
        chosen = next((t for t in trials if t.number == number), None)
        if chosen is None:
            raise AutoPruneError(f"--trial {number}: {run} has trials 0..{len(trials) - 1}")
    if chosen is None or chosen.result is None:
        raise AutoPruneError(f"trial {number} of {run} has no result ({'failed' if chosen else 'none complete'}); "
                             "pick a complete trial from trials.csv or pareto.json")
    return dict(chosen.result.counts)


def _epoch_line(epochs: int, distill: bool = True) -> Callable[[int, Any], None]:
    """Without progress bars, one line per finished supernet epoch (logs of long runs show where they are)."""
    started = time.perf_counter()
    smaller = "distilled" if distill else "smaller (labels)"

    def line(epoch: int, history: Any) -> None:
        console.print(f"supernet: epoch {epoch + 1}/{epochs} finished ({time.perf_counter() - started:.0f} s; "
                      f"loss largest {history.largest_loss[-1]:.3f}, {smaller} {history.distill_loss[-1]:.3f})",
                      highlight=False)

    return line


def export_subnet(
    net: Supernet, counts: dict[str, int], model: nn.Module, s: Setup, report: RunReport, *, onnx: bool
) -> dict[str, str]:
    """:func:`export_model` of a sub-network of the supernet (its plan from the kept counts)."""
    return export_model(s, model, net.plan(counts), report, onnx=onnx)


def _init_distributed(device: str) -> tuple[int, int]:
    """Under ``torchrun`` (WORLD_SIZE > 1) join the process group: gloo on CPU, nccl on GPU."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), world
