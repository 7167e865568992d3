"""Training and finetuning loops with a progress bar, NaN guard and optional frozen masks."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn import functional as F

from autoprune._types import Batch
from autoprune.errors import TrainingError
from autoprune.metrics.accuracy import evaluate_accuracy
from autoprune.precision import autocast, check_device_supports, check_precision, prepare_input, training_layout


@dataclass(frozen=True)
class TrainConfig:
    """How to train or finetune.

    Attributes:
        epochs: Passes over the training set (0 is allowed: nothing happens).
        lr: Peak learning rate (SGD with Nesterov momentum 0.9, cosine decay to 0).
        weight_decay: L2 penalty on weights.
        batch_size: Training batch size.
        label_smoothing: Cross-entropy label smoothing.
        warmup_epochs: Linear warm-up at the start (fraction of an epoch allowed).
        precision: Arithmetic of the training steps, ``fp32`` or ``bf16`` (mixed precision, see
            :mod:`autoprune.precision`); validation accuracy is always computed in float32.
    """

    epochs: int = 10
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 128
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs} must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainHistory:
    """Per-epoch training loss and validation accuracy."""

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)


def make_progress(enabled: bool = True) -> Progress:
    """A rich progress bar in the style every autoprune command uses."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
        transient=False,
    )


def make_sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum 0.9; weight decay on conv/linear weights only (not on BN or biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(
        [
            {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )


def train(
    model: nn.Module,
    train_loader: Iterable[Batch],
    config: TrainConfig,
    *,
    val_loader: Iterable[Batch] | None = None,
    device: torch.device | str = "cpu",
    masks: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    description: str = "train",
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    checkpoint: Path | None = None,
) -> TrainHistory:
    """Train ``model`` in place with SGD + cosine schedule.

    Args:
        model: The model (moved to ``device``).
        train_loader: Training batches.
        config: Hyper-parameters.
        val_loader: If given, validation accuracy is computed after every epoch (split from the
            training set; never the test set).
        device: Where to train.
        masks: Parameter masks (``{name: bool tensor}``) whose zeros must stay exactly zero: masked
            weights and their gradients are zeroed at every step.
        progress: Show a progress bar.
        description: Label of the progress bar.
        on_epoch_end: Called with ``(epoch, model)`` after each epoch (checkpointing).
        checkpoint: Resumable training: the state after every finished epoch (weights, optimizer, schedule,
            history) is written here, and training started again with the same file continues after the
            last finished epoch (later epochs see a fresh data order). The caller removes it when done.

    Returns:
        The per-epoch history.

    Raises:
        TrainingError: the loss became NaN or infinite; the model is restored to the state it had at
            the start of that epoch (the last good state) before raising.
    """
    from autoprune.engine.masking import MaskEnforcer  # engine imports training-free parts only

    model.to(device)
    history = TrainHistory()
    if config.epochs == 0:
        return history
    check_device_supports(config.precision, device)
    optimizer = make_sgd(model, config.lr, config.weight_decay)
    steps_per_epoch = max(1, _len(train_loader))
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("epochs") != config.epochs:
            raise TrainingError(f"{checkpoint} holds training toward {state.get('epochs')} epochs, not "
                                f"{config.epochs}: delete it to start over, or train {state.get('epochs')} epochs")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = TrainHistory(**state["history"])
        start = int(state["epoch"])
    enforcer = MaskEnforcer(model, masks) if masks else None
    if enforcer is not None:
        enforcer.attach(optimizer)
    try:
        with make_progress(progress) as bar, training_layout(model, config.precision):
            task = bar.add_task(description, total=total, completed=start * steps_per_epoch, status="")
            for epoch in range(start, config.epochs):
                good_state = copy.deepcopy(model.state_dict())
                model.train()
                loss_sum, seen = 0.0, 0
                for x, y in train_loader:
                    x, y = prepare_input(x.to(device), config.precision), y.to(device)
                    with autocast(config.precision, device):
                        loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
                    if not torch.isfinite(loss):
                        model.load_state_dict(good_state)
                        raise TrainingError(
                            f"{description}: loss became {loss.item()} in epoch {epoch + 1}; the model was "
                            f"restored to its state at the start of that epoch. Lower the learning rate "
                            f"(lr={config.lr}) or check the data for NaNs."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    loss_sum += loss.item() * y.numel()
                    seen += y.numel()
                    bar.update(task, advance=1, status=f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.3f}")
                history.train_loss.append(loss_sum / max(1, seen))
                if val_loader is not None:
                    acc = evaluate_accuracy(model, val_loader, device=device).top1
                    history.val_accuracy.append(acc)
                    bar.update(task, status=f"epoch {epoch + 1}/{config.epochs} val acc {acc:.3f}")
                if on_epoch_end is not None:
                    on_epoch_end(epoch, model)
                if checkpoint is not None:
                    _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "epochs": config.epochs,
                                  "history": history.to_dict()}, checkpoint)
    finally:
        if enforcer is not None:
            enforcer.remove()
    return history


def _save_atomic(state: dict[str, object], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _len(loader: Iterable[Batch]) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 0
