"""One vocabulary of options shared by every command (later commands reuse these aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Model = Annotated[
    str,
    typer.Option(
        "--model",
        help="Built-in name (resnet20, resnet32, resnet56, vgg_small, mobilenetv2), 'torchvision:NAME', "
        "or 'path/to/file.py:factory'. A file.py:factory model RUNS THAT FILE'S CODE: only use files you trust.",
    ),
]
Dataset = Annotated[
    str, typer.Option("--dataset", help="digits (embedded), fashion-mnist, mnist, cifar10, cifar100, imagefolder.")
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder of the dataset (not needed for digits).")
]
Download = Annotated[
    bool, typer.Option("--download", metavar="", help="Let torchvision download a missing dataset (needs internet).")
]
ImageSize = Annotated[
    int | None, typer.Option("--image-size", help="Resize images to this side (default: the dataset's own).")
]
Checkpoint = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Trained weights (state_dict .pt or .safetensors; loaded without pickle)."),
]
TargetMacs = Annotated[
    float | None,
    typer.Option("--target-macs", help="Budget: fraction of the dense MACs to keep, in (0, 1] (default 0.5 when "
                 "no other budget is given). One budget per run."),
]
TargetParams = Annotated[
    float | None,
    typer.Option("--target-params", help="Budget: fraction of the dense parameters to keep, in (0, 1] (instead of "
                 "--target-macs)."),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed for Python, NumPy, torch and the search.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Out = Annotated[
    Path | None,
    typer.Option("--out", help="Run folder for results (report.json, weights, plan). Default: runs/<command>-<time>."),
]
Threads = Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's choice).")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", metavar="", help="Show progress bars.")]
Overwrite = Annotated[
    bool,
    typer.Option("--overwrite", metavar="", help="Replace the run already in --out whole (default: refuse to write "
                 "into another run's folder)."),
]
TrainEpochs = Annotated[
    int, typer.Option("--train-epochs", "--epochs", help="Epochs of dense training (SGD, cosine).")
]
DenseEpochs = Annotated[
    int, typer.Option("--train-epochs", help="Epochs to train the dense model first when no --checkpoint is given.")
]
SupernetEpochs = Annotated[
    int, typer.Option("--supernet-epochs", help="Epochs of sandwich-rule supernet training.")
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Training batch size.")]
RoundTo = Annotated[
    int, typer.Option("--round-to", help="Kept channels are multiples of this (1 = exact; 8 runs well on most "
                      "hardware).")
]
ValBatchSize = Annotated[
    int | None,
    typer.Option("--val-batch-size", help="Validation batch size (search: one fidelity unit). Default: 256, "
                 "smaller for small validation sets so that there are at least 8 batches."),
]
ValBatches = Annotated[
    int | None, typer.Option("--val-batches", help="Score on at most this many validation batches (default: all).")
]
Onnx = Annotated[
    bool, typer.Option("--onnx/--no-onnx", metavar="", help="Also export model.onnx (checked against PyTorch).")
]
