"""Setup shared by commands: seeding, device, data, model, run folder, error handling."""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from autoprune.cli.runfolder import HOW_NOT_WHAT, MARKER, Mode, claim_run_folder
from autoprune.errors import AutoPruneError, RunFolderError

if TYPE_CHECKING:  # the heavy libraries are imported where a command runs, not for --help
    import torch
    from torch import nn

    from autoprune.cli.options import RunOptions
    from autoprune.data import DataSplits
    from autoprune.engine.plan import PrunePlan
    from autoprune.report import RunReport
    from autoprune.search_spaces import SearchSpace

console = Console(stderr=True)
P = ParamSpec("P")
R = TypeVar("R")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn user mistakes into one clear line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _claimed.clear()
        try:
            return fn(*args, **kwargs)
        except (AutoPruneError, ValueError) as exc:
            _release()
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # the file system refused (full disk, permissions, over-long name, ...)
            _release()
            where = f" {exc.filename}" if exc.filename else ""
            console.print(f"[bold red]error:[/] cannot write or read{where}: {exc.strerror or exc}; free space, fix "
                          "the permissions or choose another --out", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/]: {_kept()}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper


_claimed: list[tuple[Path, bool]] = []  # run folders claimed in this process, and whether they were created


def _release() -> None:
    """After a failure, remove the claim of a run that wrote nothing (and the folder if the claim made it)."""
    while _claimed:
        folder, created = _claimed.pop()
        try:
            if {f.name for f in folder.iterdir()} == {MARKER}:
                (folder / MARKER).unlink()
                if created:
                    folder.rmdir()
        except OSError:
            pass


def _kept() -> str:
    if not _claimed:
        return "nothing was written"
    folder = _claimed[-1][0]
    files = [f for f in folder.rglob("*") if f.is_file() and f.name != MARKER] if folder.is_dir() else []
    if not files:
        return f"no result was written yet ({folder} holds none)"
    return f"the {len(files)} file(s) finished in {folder} are kept"


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable device is a clear error (see :mod:`autoprune._device`)."""
    from autoprune._device import resolve_device as resolve

    return resolve(device)


DEFAULT_TARGET_MACS = 0.5


def one_budget(**given: Any) -> tuple[str, Any]:
    """The one budget of a run: ``(option, value)`` of the single option given (``--target-macs 0.5`` if none).

    ``given`` maps option names without dashes (``target_macs``, ``target_params``, ``target_latency``,
    ``keep_ratios``, ``from_run``) to their values, None when not given. Two at once is an error: the run
    could only honour one of them, silently.
    """
    chosen = {k: v for k, v in given.items() if v is not None}
    if len(chosen) > 1:
        shown = " and ".join(f"{_flag(k)} {v}" for k, v in chosen.items())
        raise AutoPruneError(f"give one budget per run, not {shown}: keep one of {', '.join(map(_flag, chosen))}")
    if not chosen:
        return "target_macs", DEFAULT_TARGET_MACS
    name, value = next(iter(chosen.items()))
    if name.startswith("target_") and not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
        what = {"target_macs": "MACs", "target_params": "parameters", "target_latency": "latency"}[name]
        raise AutoPruneError(f"{_flag(name)} {value} must be in (0, 1]: the fraction of the dense {what} to keep")
    return name, value


def with_budget(space: SearchSpace, budget: str, target: float) -> SearchSpace:
    """``space`` with the budget of :func:`one_budget` (``target_macs`` or ``target_params``) as its target."""
    metric = {"target_macs": "macs", "target_params": "params"}[budget]
    return dataclasses.replace(space, metric=metric, target=target, latency_table=None)


def limit_validation(s: Setup, val_batch_size: int | None, val_batches: int | None) -> int:
    """Apply ``--val-batch-size`` / ``--val-batches`` to ``s.splits`` (the same rule on every command).

    Returns the validation batch size: the given one, else 256, smaller for small validation sets so that
    there are at least 8 batches. With ``val_batches``, validation (and the calibration drawn from it) keeps
    only its first ``val_batches`` batches.
    """
    from torch.utils.data import Subset

    from autoprune.data.splits import default_val_batch_size

    at_least(1, val_batch_size=val_batch_size, val_batches=val_batches)
    n_samples = len(s.splits.val)  # type: ignore[arg-type]
    size = val_batch_size or default_val_batch_size(n_samples)
    if val_batches is not None and val_batches * size < n_samples:
        s.splits = dataclasses.replace(s.splits, val=Subset(s.splits.val, range(val_batches * size)))
    return size


def at_least(minimum: float, **values: float | None) -> None:
    """Refuse any given option value below ``minimum``, naming the option (``bn_batches=-3`` -> ``--bn-batches``)."""
    for name, value in values.items():
        if value is not None and not value >= minimum:
            raise AutoPruneError(f"{_flag(name)} {value} must be >= {minimum:g}")


def above_zero(**values: float | None) -> None:
    """Refuse any given option value that is not > 0, naming the option (``finetune_lr=0`` -> ``--finetune-lr``)."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise AutoPruneError(f"{_flag(name)} {value} must be > 0")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class Setup:
    """What every command starts from."""

    splits: DataSplits
    model: nn.Module
    device: torch.device
    out: Path
    checkpoint_meta: dict[str, Any]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    precision: str = "fp32"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.splits.input_shape(1)

    def report(self, command: str, model: str, dataset: str, seed: int, started: float | None = None) -> RunReport:
        """The command's report, with every command-line option (``config.cli``) and the data's shape."""
        from autoprune.report import RunReport

        report = RunReport(command, model, dataset, seed, self.out, cli=dict(self.settings))
        if started is not None:
            report.started = started
        report.data_shape = {"num_classes": self.splits.num_classes, "in_channels": self.splits.in_channels,
                             "image_size": list(self.splits.image_size)}
        return report


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
    settings: dict[str, Any] | None = None,
    precision: str = "fp32",
    mode: Mode = "new",
    overwrite: bool = False,
    defining: tuple[str, ...] | None = None,
) -> Setup:
    """Claim the run folder, seed, pick the device, load the data, build the model (and its checkpoint).

    ``settings``, ``mode``, ``overwrite`` and ``defining``: see :func:`claim_run_folder` (the folder is
    checked and claimed first, so that nothing is computed for a run that cannot be written).
    """
    import torch

    from autoprune.data import load_dataset
    from autoprune.models import build_model, load_checkpoint_into
    from autoprune.precision import SlowPrecisionWarning, check_device_supports, slow_precision_message
    from autoprune.seed import seed_everything

    if threads is not None:
        if threads < 1:
            raise AutoPruneError(f"--threads {threads} must be >= 1")
        torch.set_num_threads(threads)
    at_least(1, image_size=image_size)
    check_precision_name(precision)
    try:
        existed = out is not None and out.exists()
    except OSError:  # an over-long name: claim_run_folder says so in one line
        existed = False
    folder = claim_run_folder(out, command, settings or {}, mode=mode, overwrite=overwrite, defining=defining)
    _claimed.append((folder, not existed))
    seed_everything(seed)
    dev = resolve_device(device)
    try:
        check_device_supports(precision, dev)
    except ValueError as exc:
        raise AutoPruneError(f"--precision {precision}: {exc}") from None
    slow = slow_precision_message(precision, dev)
    if slow is not None:  # it runs as asked, only slowly: say so once, up front
        console.print(f"[yellow]warning:[/] --precision {precision}: {slow}", highlight=False, soft_wrap=True)
        warnings.filterwarnings("ignore", category=SlowPrecisionWarning)  # said once; not again per training
    splits = load_dataset(dataset, data_dir, download=download, image_size=image_size)
    net = build_model(model, num_classes=splits.num_classes, in_channels=splits.in_channels)
    check_input_fits(net, model, splits.input_shape(2))
    meta: dict[str, Any] = {}
    if checkpoint is not None:
        meta = load_checkpoint_into(net, checkpoint)
    return Setup(splits=splits, model=net.to(dev), device=dev, out=folder, checkpoint_meta=meta,
                 settings=dict(settings or {}), precision=precision)


def start(command: str, run: RunOptions, settings: dict[str, Any], *, mode: Mode = "new",
          defining: tuple[str, ...] | None = None, checkpoint: Path | bool | None = True) -> Setup:  # fmt: skip
    """:func:`setup` from the shared options (``checkpoint=False``: the command loads no dense checkpoint)."""
    return setup(command=command, model=run.model, dataset=run.dataset, data_dir=run.data_dir, download=run.download,
                 image_size=run.image_size, checkpoint=run.checkpoint if checkpoint is True else None, seed=run.seed,
                 device=run.device, out=run.out, threads=run.threads, settings=settings, mode=mode,
                 overwrite=run.overwrite, defining=defining, precision=run.precision)  # fmt: skip


def start_or_continue(command: str, run: RunOptions, settings: dict[str, Any], *,
                      verb: str = "run it") -> Setup:  # fmt: skip
    """:func:`start` for a command whose rerun on its unfinished folder continues it (the same settings, except
    how it computes); a finished run (``report.json`` present) is refused, naming ``--overwrite``."""
    s = start(command, run, settings, mode="continue", defining=tuple(k for k in settings if k not in HOW_NOT_WHAT))
    if (s.out / "report.json").is_file():
        raise RunFolderError(f"--out {s.out} holds a finished {command} run: pass a new --out, or --overwrite to "
                             f"{verb} again from scratch")
    return s


def check_precision_name(precision: str) -> None:
    """Refuse an unknown ``--precision`` in one line."""
    from autoprune.precision import PRECISIONS

    if precision not in PRECISIONS:
        raise AutoPruneError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def precision_used(run: RunOptions, *, trains: bool, why_not: str) -> str:
    """``run.precision``, refused if it is unknown or if the run trains nothing (``why_not`` says why)."""
    check_precision_name(run.precision)
    if run.precision != "fp32" and not trains:
        raise AutoPruneError(f"--precision {run.precision} has no effect: this run trains nothing ({why_not}); "
                             "drop --precision")
    return run.precision


def export_model(s: Setup, model: nn.Module, plan: PrunePlan, report: RunReport, *, onnx: bool) -> dict[str, str]:
    """The one export of every command (:func:`autoprune.pipelines.search_report.write_export`) into ``s.out``."""
    from autoprune.pipelines.search_report import write_export

    return write_export(s.out, model, plan, s.input_shape, report, onnx=onnx)


def time_side_by_side(s: Setup, report: RunReport, dense: nn.Module | None, pruned: nn.Module,
                      files: dict[str, str]) -> None:  # fmt: skip
    """Dense and pruned latency from one interleaved run (eager, deploy form, ONNX Runtime), into the report."""
    onnx = s.out / files["onnx"] if "onnx" in files else None
    report.measure_latency(dense, pruned, s.input_shape, onnx=onnx)


def check_input_fits(net: nn.Module, name: str, input_shape: tuple[int, ...]) -> None:
    """One forward pass on zeros of the data's shape, so a model that cannot take it fails now, clearly."""
    import torch

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
