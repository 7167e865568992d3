"""``autoprune demo``: the main job end to end on the embedded digits data, then the next steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autoprune.cli import options as opt
from autoprune.cli.app import app, out_console
from autoprune.cli.common import user_errors
from autoprune.cli.runfolder import read_marker
from autoprune.cli.search_cmds import search_cmd

DEMO_OUT = Path("runs/demo")


@app.command("demo")
@user_errors
def demo_cmd(
    model: opt.Model = "resnet20",
    target_macs: opt.TargetMacs = None,
    target_params: opt.TargetParams = None,
    train_epochs: opt.DenseEpochs = 30,
    supernet_epochs: opt.SupernetEpochs = 15,
    trials: Annotated[int, typer.Option("--trials", help="Candidates the search evaluates.")] = 40,
    seed: opt.Seed = 0,
    out: Annotated[
        Path, typer.Option("--out", help="Run folder; a rerun continues the demo already there.")
    ] = DEMO_OUT,
    overwrite: opt.Overwrite = False,
    threads: opt.Threads = None,
    progress: opt.Progress = True,
) -> None:
    """The main job on the embedded digits data (about a minute on 2 cores, no download).

    Trains the dense model, trains a weight-sharing supernet, searches per-layer keep ratios at
    --target-macs (default 0.5) with TPE, fixes the winner on validation data (judged on a hold-out), exports it without
    finetuning (plan.json, model.safetensors, model.onnx), prints dense / uniform / winner side by side,
    writes figures and report.html, and prints the next steps. A rerun continues the same folder.
    """
    marker = read_marker(out) if out.is_dir() else None
    resume = not overwrite and marker is not None and marker["command"] == "search"
    shared = opt.RunOptions(model=model, dataset="digits", seed=seed, device="cpu", out=out, overwrite=overwrite,
                            threads=threads, progress=progress)
    search_cmd(shared, target_macs=target_macs, target_params=target_params, searcher="tpe", trials=trials,
               train_epochs=train_epochs, supernet_epochs=supernet_epochs, resume=resume)
    from autoprune.analysis.html import write_report

    page = write_report(out, png=True).get("html", out / "report.html")
    out_console.print(
        f"\nnext steps:\n"
        f"  open {page}   (figures, the best trials, how to load the model)\n"
        f"  load the exported model in Python:\n"
        f"    import autoprune as ap\n"
        f"    base = ap.build_model({model!r}, num_classes=10, in_channels=1)\n"
        f"    model = ap.load_pruned(base, '{out / 'plan.json'}', '{out / 'model.safetensors'}')\n"
        f"  prune your own model: autoprune search --model torchvision:resnet18 --dataset imagefolder "
        f"--data-dir DIR --checkpoint WEIGHTS.pt --target-macs 0.5\n"
        f"  every command: autoprune --help",
        highlight=False,
        soft_wrap=True,
    )
