"""One vocabulary of options shared by every command (later commands reuse these aliases)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

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
TargetRange = Annotated[
    str | None,
    typer.Option("--target-range", help="Train one budget-conditioned RL agent (--searcher ddpg, td3, sac or ppo) "
                 "over these targets, LOW:HIGH of the MACs (params:LOW:HIGH for parameters), instead of one budget; "
                 "saved as OUT/policy.zip. The run's winner is fixed at HIGH."),
]
Policy = Annotated[
    Path | None,
    typer.Option("--policy", help="Answer --target-macs (or --targets) from this saved policy.zip of a "
                 "--target-range run, without training: one rollout per target, re-scored beside the uniform "
                 "candidate, exported. Loading unpickles parts of the file: only use policies you trust."),
]
Targets = Annotated[
    str | None,
    typer.Option("--targets", help="With --policy: several targets, e.g. 0.35,0.45,0.55 (one sub-folder of OUT "
                 "per target, listed in OUT/answers.json)."),
]
Space = Annotated[
    str | None,
    typer.Option("--space", help="Search space: a YAML file, a bundled name (resnet20, ...), or 'auto'. "
                 "Default: the bundled space of --model if there is one, else auto."),
]
BnBatches = Annotated[int, typer.Option("--bn-batches", help="Calibration batches for adaptive BatchNorm.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for Python, NumPy, torch and the search.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Out = Annotated[
    Path | None,
    typer.Option("--out", help="Run folder for results (report.json, weights, plan). Default: runs/<command>-<time>."),
]
Threads = Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's choice).")]
Precision = Annotated[
    str,
    typer.Option("--precision", help="Arithmetic of training steps (dense training, finetuning, supernet): fp32, "
                 "or bf16 mixed precision (about 2x faster on CPUs with AMX/AVX512-BF16 and on Ampere+ GPUs). "
                 "Evaluation is always fp32."),
]
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


@dataclass
class RunOptions:
    """The options every command that builds a model shares (given once, by :func:`run_options`)."""

    model: str = "resnet20"
    dataset: str = "digits"
    data_dir: Path | None = None
    download: bool = False
    image_size: int | None = None
    checkpoint: Path | None = None
    seed: int = 0
    device: str = "auto"
    out: Path | None = None
    overwrite: bool = False
    threads: int | None = None
    precision: str = "fp32"
    progress: bool = True


#: Each shared option's annotation (help text and flags), in the order ``--help`` lists them: the first
#: six before a command's own options, the rest after.
_SHARED: dict[str, Any] = {
    "model": Model, "dataset": Dataset, "data_dir": DataDir, "download": Download, "image_size": ImageSize,
    "checkpoint": Checkpoint, "seed": Seed, "device": Device, "out": Out, "overwrite": Overwrite,
    "threads": Threads, "precision": Precision, "progress": Progress,
}  # fmt: skip
_HEAD = ("model", "dataset", "data_dir", "download", "image_size", "checkpoint")


def run_options(*, without: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Give a command the shared options (minus ``without``) as one :class:`RunOptions` argument ``run``.

    The command declares only its own options and a first parameter ``run: RunOptions``; ``--help`` lists
    the shared options with theirs. ``defaults`` overrides a shared option's default for this command.
    """

    def decorate(fn: F) -> F:
        names = [n for n in _SHARED if n not in without]
        base = {f.name: f.default for f in dataclasses.fields(RunOptions)} | (defaults or {})
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "run"]
        shared = {n: inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=base[n], annotation=_SHARED[n])
                  for n in names}  # fmt: skip
        params = [shared[n] for n in names if n in _HEAD]
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        params += [shared[n] for n in names if n not in _HEAD]

        @functools.wraps(fn)
        def command(given: RunOptions | None = None, /, **kwargs: Any) -> Any:
            """From the command line: shared options as keywords; from Python: a RunOptions first."""
            values: dict[str, Any] = {n: kwargs.pop(n) if n in kwargs else base[n] for n in _SHARED}
            return fn(given if given is not None else RunOptions(**values), **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {**{n: _SHARED[n] for n in names}, **{p.name: p.annotation for p in own}}
        del command.__wrapped__  # typer must read the new signature, not the function's own
        return command  # type: ignore[return-value]

    return decorate


def settings_of(run: RunOptions, own: dict[str, Any]) -> dict[str, Any]:
    """Every option of a command as given: the shared ones and the command's own (its ``locals()`` at entry)."""
    return {**dataclasses.asdict(run), **{k: v for k, v in own.items()
                                          if k != "run" and not callable(v) and not inspect.ismodule(v)}}
