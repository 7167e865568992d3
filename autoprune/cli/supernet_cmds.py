"""``autoprune supernet`` (train once) and ``autoprune extract`` (a sub-network, no finetuning)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.distributed as dist
import typer
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from autoprune.cli import options as opt
from autoprune.cli.app import _metrics_table, _train, app, out_console
from autoprune.cli.common import Setup, console, parse_keep_ratios, setup, user_errors
from autoprune.engine.export import export_onnx, save_weights
from autoprune.engine.importance import IMPORTANCES
from autoprune.errors import AutoPruneError
from autoprune.evaluate import SupernetEvaluator
from autoprune.models import build_model
from autoprune.pipelines.oneshot import build_supernet, resolve_space
from autoprune.report import RunReport, model_metrics
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet, SupernetConfig

Space = Annotated[
    str | None,
    typer.Option("--space", help="Search space: a YAML file, a bundled name (resnet20, ...), or 'auto'. "
                 "Default: the bundled space of --model if there is one, else auto."),
]
BnBatches = Annotated[int, typer.Option("--bn-batches", help="Calibration batches for adaptive BatchNorm.")]


def _reference_points(evaluator: SupernetEvaluator, space: SearchSpace) -> dict[str, Any]:
    points = {"largest": space.largest(), "smallest": space.smallest(), "uniform_at_target": space.uniform(1.0)}
    out = {}
    for name, counts in points.items():
        r = evaluator.evaluate(counts)
        out[name] = {"val_accuracy": r.accuracy, "macs_ratio": r.macs_ratio, "counts": r.counts}
    return out


@app.command("supernet")
@user_errors
def supernet_cmd(
    model: opt.Model = "resnet20",
    dataset: opt.Dataset = "digits",
    data_dir: opt.DataDir = None,
    download: opt.Download = False,
    image_size: opt.ImageSize = None,
    checkpoint: opt.Checkpoint = None,
    space: Space = None,
    target_macs: opt.TargetMacs = 0.5,
    epochs: Annotated[int, typer.Option("--epochs", help="Sandwich-rule training epochs.")] = 5,
    num_random: Annotated[int, typer.Option("--num-random", help="Random sub-networks per step.")] = 2,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (SGD, cosine).")] = 0.02,
    criterion: Annotated[str, typer.Option("--criterion", help="Channel ranking criterion.")] = "l1",
    train_epochs: Annotated[
        int, typer.Option("--train-epochs", help="Epochs to train the dense model first when no --checkpoint.")
    ] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 128,
    bn_batches: BnBatches = 10,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    out: opt.Out = None,
    threads: opt.Threads = None,
    progress: opt.Progress = True,
) -> None:
    """Train a weight-sharing supernet once (sandwich rule + in-place distillation); rerun to resume."""
    if criterion not in IMPORTANCES:
        raise AutoPruneError(IMPORTANCES.unknown_message(criterion))
    config = SupernetConfig(epochs=epochs, lr=lr, num_random=num_random, seed=seed)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and checkpoint is None:
        raise AutoPruneError("under torchrun pass --checkpoint (a trained dense model), so that every process "
                             "ranks channels of the same weights; train it first with `autoprune train`")
    rank, world = _init_distributed(device)
    s = setup(command="supernet", model=model, dataset=dataset, data_dir=data_dir, download=download,
              image_size=image_size, checkpoint=checkpoint, seed=seed, device=device, out=out, threads=threads)
    report = RunReport("supernet", model, dataset, seed, s.out)
    ckpt = s.out / "supernet.pt"
    if checkpoint is None and not ckpt.exists():
        console.print(f"no --checkpoint: training {model} for {train_epochs} epochs first")
        report.set(training=_train(s, train_epochs, 0.05, batch_size, seed, progress))
    from autoprune.engine.structure import ModelStructure

    search_space = resolve_space(ModelStructure(s.model, s.input_shape), model, space, target_macs)
    test_loader = s.splits.test_loader()
    dense = model_metrics(s.model, s.input_shape, test_loader=test_loader, device=s.device)
    if ckpt.exists():
        console.print(f"resuming the supernet in {ckpt}")
    if world > 1:
        sampler: DistributedSampler[Any] = DistributedSampler(s.splits.train, num_replicas=world, rank=rank, seed=seed)
        train_loader: Any = DataLoader(s.splits.train, batch_size=batch_size, sampler=sampler)
    else:
        train_loader = s.splits.train_loader(batch_size, seed=seed)
    run = build_supernet(
        s.model, s.input_shape, search_space, train_loader, config,
        criterion=criterion, calibration=s.splits.calibration_loader(seed=seed), checkpoint=ckpt,
        meta={"model": model, "dataset": dataset, "num_classes": s.splits.num_classes,
              "in_channels": s.splits.in_channels, "image_size": list(s.splits.image_size)},
        device=s.device, progress=progress and rank == 0,
    )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return
        report.set(distributed={"world_size": world, "backend": "nccl" if s.device.type == "cuda" else "gloo"})
    evaluator = SupernetEvaluator(run.supernet, s.splits.val_loader(), s.splits.calibration_loader(seed=seed),
                                  bn_batches=bn_batches, device=s.device)
    points = _reference_points(evaluator, run.space)
    report.set(dense=dense, config={"supernet": config.to_dict(), "criterion": criterion, "device": str(s.device)},
               space=run.space.to_dict(), history=run.history.__dict__, subnets=points,
               files={"supernet": "supernet.pt"}, evaluator=evaluator.stats.to_dict())
    path = report.write()
    for name, p in points.items():
        out_console.print(f"{name:18s} MACs {p['macs_ratio']:.3f}  val accuracy {p['val_accuracy']:.4f}")
    out_console.print(f"supernet: {ckpt}\nreport: {path}")


@app.command("extract")
@user_errors
def extract_cmd(
    supernet: Annotated[Path, typer.Option("--supernet", help="supernet.pt written by `autoprune supernet`.")],
    model: opt.Model = "resnet20",
    dataset: opt.Dataset = "digits",
    data_dir: opt.DataDir = None,
    image_size: opt.ImageSize = None,
    target_macs: opt.TargetMacs = 0.5,
    keep_ratios: Annotated[
        str | None, typer.Option("--keep-ratios", help="Per-group keep ratios (JSON object or .json file).")
    ] = None,
    from_run: Annotated[
        Path | None, typer.Option("--from-run", help="A search run folder: export one of its trials.")
    ] = None,
    trial: Annotated[
        int | None, typer.Option("--trial", help="With --from-run: the trial number (default: the run's winner "
                                 "from report.json; any Pareto point of pareto.json works).")
    ] = None,
    bn_batches: BnBatches = 10,
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Also export model.onnx (checked).")] = True,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    out: opt.Out = None,
    threads: opt.Threads = None,
) -> None:
    """Export one sub-network of a supernet with its shared weights (no finetuning).

    Without --keep-ratios: the widest uniform sub-network within --target-macs (projected onto the budget).
    """
    s = setup(command="extract", model=model, dataset=dataset, data_dir=data_dir, download=False,
              image_size=image_size, checkpoint=None, seed=seed, device=device, out=out, threads=threads)
    net, meta = Supernet.load(supernet, build_model(model, num_classes=s.splits.num_classes,
                                                    in_channels=s.splits.in_channels))
    from autoprune.search_spaces import SearchSpace as _Space

    space = _Space.from_dict(meta["space"], net.structure) if "space" in meta else resolve_space(
        net.structure, model, None, target_macs)
    if from_run is not None:
        if keep_ratios is not None:
            raise AutoPruneError("give --from-run (with --trial) or --keep-ratios, not both")
        counts = _trial_counts(from_run, trial)
    elif trial is not None:
        raise AutoPruneError("--trial needs --from-run RUN_DIR (the search run folder holding trials.jsonl)")
    elif keep_ratios is not None:
        counts = space.structure.keep_counts(parse_keep_ratios(keep_ratios), round_to=space.round_to)
        counts = space.project(space.ratios(counts), fill=False)  # an explicit request is not filled up
    else:
        counts = space.project([1.0] * len(space.groups)) if target_macs >= 1.0 else _retarget(space, target_macs)
    report = RunReport("extract", model, dataset, seed, s.out)
    test_loader = s.splits.test_loader()
    dense_model = build_model(model, num_classes=s.splits.num_classes, in_channels=s.splits.in_channels)
    dense = {"macs": net.structure.dense_macs, "params": net.structure.dense_params}
    pruned_model = net.extract(counts, calibration=s.splits.calibration_loader(seed=seed), bn_batches=bn_batches)
    pruned = model_metrics(pruned_model.to(s.device), s.input_shape, test_loader=test_loader, device=s.device)
    dense.update(latency_ms=model_metrics(dense_model, s.input_shape)["latency_ms"])
    files = export_subnet(net, counts, pruned_model, s, report, onnx=onnx)
    report.set(dense=dense, pruned=pruned, counts=counts, keep_ratios=space.ratios(counts), files=files,
               supernet=str(supernet), finetuned=False)
    path = report.write()
    out_console.print(_metrics_table(f"{model}: sub-network of {supernet.name} (no finetuning)",
                                     {"pruned": pruned}))
    out_console.print(f"MACs kept: {pruned['macs'] / dense['macs']:.3f}\nreport: {path}")


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


def export_subnet(
    net: Supernet, counts: dict[str, int], model: nn.Module, s: Setup, report: RunReport, *, onnx: bool
) -> dict[str, str]:
    """Write plan.json, model.safetensors (and model.onnx, checked against PyTorch) of a sub-network."""
    net.plan(counts).save(s.out / "plan.json")
    save_weights(model, s.out / "model.safetensors")
    files = {"plan": "plan.json", "weights": "model.safetensors"}
    if onnx:
        report.set(onnx_max_abs_diff=export_onnx(model, s.input_shape, s.out / "model.onnx"))
        files["onnx"] = "model.onnx"
    return files


def _init_distributed(device: str) -> tuple[int, int]:
    """Under ``torchrun`` (WORLD_SIZE > 1) join the process group: gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), world


def _retarget(space: SearchSpace, target: float) -> dict[str, int]:
    import dataclasses

    return dataclasses.replace(space, target=target).project([1.0] * len(space.groups))
