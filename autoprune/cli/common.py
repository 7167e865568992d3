"""Setup shared by commands: seeding, device, data, model, run folder, error handling."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch
import typer
from rich.console import Console
from torch import nn

from autoprune.data import DataSplits, load_dataset
from autoprune.errors import AutoPruneError
from autoprune.models import build_model, load_checkpoint_into
from autoprune.seed import seed_everything

console = Console(stderr=True)
P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn user mistakes into one clear line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (AutoPruneError, ValueError) as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]; files written so far are kept")
            raise typer.Exit(130) from None

    return wrapper


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable device is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AutoPruneError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutoPruneError(f"--device {device} asked for CUDA but none is available; use --device cpu")
    return dev


def run_folder(out: Path | None, command: str) -> Path:
    """The run folder: ``--out`` or ``runs/<command>-<timestamp>``; created if missing."""
    if out is None:
        out = Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise AutoPruneError(f"--out {str(out)!r} is a file, not a folder; pass a new or existing folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AutoPruneError(f"--out {str(out)!r}: cannot create the run folder ({exc.strerror or exc})") from None
    return out


@dataclass
class Setup:
    """What every command starts from."""

    splits: DataSplits
    model: nn.Module
    device: torch.device
    out: Path
    checkpoint_meta: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.splits.input_shape(1)


def setup(
    *,
    command: str,
    model: str,
    dataset: str,
    data_dir: Path | None,
    download: bool,
    image_size: int | None,
    checkpoint: Path | None,
    seed: int,
    device: str,
    out: Path | None,
    threads: int | None,
) -> Setup:
    """Seed, pick the device, load the data, build the model (and load its checkpoint)."""
    if threads is not None:
        if threads < 1:
            raise AutoPruneError(f"--threads {threads} must be >= 1")
        torch.set_num_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    splits = load_dataset(dataset, data_dir, download=download, image_size=image_size)
    net = build_model(model, num_classes=splits.num_classes, in_channels=splits.in_channels)
    check_input_fits(net, model, splits.input_shape(2))
    meta: dict[str, Any] = {}
    if checkpoint is not None:
        meta = load_checkpoint_into(net, checkpoint)
    folder = run_folder(out, command)
    return Setup(splits=splits, model=net.to(dev), device=dev, out=folder, checkpoint_meta=meta)


def check_input_fits(net: nn.Module, name: str, input_shape: tuple[int, ...]) -> None:
    """One forward pass on zeros of the data's shape, so a model that cannot take it fails now, clearly."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(input_shape))
    except Exception as exc:  # any failure of the user's forward on this shape
        raise AutoPruneError(
            f"model {name!r} does not accept inputs of shape {tuple(input_shape)} (N, C, H, W) from this dataset: "
            f"{type(exc).__name__}: {str(exc)[:200]}. Use --image-size to resize the images, or a model built "
            "for this input size"
        ) from None
    finally:
        net.train(was_training)


def parse_keep_ratios(value: str) -> dict[str, float]:
    """``--keep-ratios``: inline JSON ``{"group": ratio}`` or the path of a JSON file holding it."""
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise AutoPruneError(f"--keep-ratios {value!r} is neither a JSON object nor an existing .json file")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AutoPruneError(f"--keep-ratios is not valid JSON ({exc}); expected {{\"group\": ratio, ...}}") from None
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise AutoPruneError('--keep-ratios must be a JSON object of numbers, e.g. {"layer1.0.conv1": 0.5}')
    return {str(k): float(v) for k, v in data.items()}
