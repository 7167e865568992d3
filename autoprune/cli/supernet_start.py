"""Where a supernet starts: the dense model (trained once into the run folder, or a given checkpoint's, for
the reports) or a trained supernet that a new run continues."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy libraries are imported where a command runs, not for --help
    from torch import nn

    from autoprune.report import RunReport

from autoprune.cli.app import _train
from autoprune.cli.common import Setup, console
from autoprune.errors import AutoPruneError


def dense_model_of(meta: dict[str, Any], model: str, s: Setup) -> nn.Module | None:
    """The supernet's dense model, when its meta names a checkpoint that still exists (for the report)."""
    from autoprune.models import build_model, load_checkpoint_into

    path = meta.get("dense_checkpoint")
    if not isinstance(path, str) or not Path(path).is_file():
        return None
    dense = build_model(model, num_classes=s.splits.num_classes, in_channels=s.splits.in_channels)
    load_checkpoint_into(dense, path)
    return dense.to(s.device)


def train_dense_once(s: Setup, model: str, dataset: str, epochs: int, batch_size: int, seed: int, progress: bool,
                     report: RunReport) -> Path:  # fmt: skip
    """Train the dense model into OUT/dense.pt, or load it from there when an earlier run finished it."""
    from autoprune.models import load_checkpoint_into, save_checkpoint

    path = s.out / "dense.pt"
    if path.is_file():
        console.print(f"dense model: {path} (trained by an earlier run of this folder)")
        load_checkpoint_into(s.model, path)
        return path
    partial = s.out / "dense.partial.pt"  # every finished epoch, so that a killed run resumes there
    resumed = " (resuming after its last finished epoch)" if partial.is_file() else ""
    console.print(f"no --checkpoint: training {model} for {epochs} epochs first{resumed} (kept as {path})")
    report.set(training=_train(s, epochs, 0.05, batch_size, seed, progress, checkpoint=partial))
    save_checkpoint(s.model, path, {"model": model, "dataset": dataset, "num_classes": s.splits.num_classes,
                                    "in_channels": s.splits.in_channels, "image_size": list(s.splits.image_size)})
    partial.unlink(missing_ok=True)
    return path


def load_init_supernet(path: Path, s: Setup) -> tuple[Path, dict[str, Any]]:
    """Load a trained supernet's weights into ``s.model``; its dense checkpoint's path and channel scores."""
    import torch

    from autoprune.errors import CheckpointError
    from autoprune.models.checkpoint import check_fits, read_checkpoint

    if not path.is_file():
        raise AutoPruneError(f"--init-supernet {path}: no such file; give the supernet.pt of an `autoprune "
                             "supernet` run")
    state, meta = read_checkpoint(path)
    if meta.get("kind") != "autoprune-supernet" or "scores" not in meta:
        raise CheckpointError(f"--init-supernet {path} is not a supernet (written by `autoprune supernet`); pass a "
                              "dense model as --checkpoint instead")
    check_fits(s.model, state, meta, path)
    s.model.load_state_dict(state)
    console.print(f"starting from the supernet {path} (its weights and channel ranking)")
    scores = {k: torch.tensor(v) for k, v in meta["scores"].items()}
    return Path(str(meta.get("dense_checkpoint", path))), scores
