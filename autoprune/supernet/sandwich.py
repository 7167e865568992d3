"""Sandwich-rule training of a supernet with in-place distillation (BigNAS / AutoSlim style).

Every step trains the largest sub-network on the labels, then the smallest and ``num_random`` random
sub-networks on the largest one's soft predictions (in-place distillation), accumulating gradients into
the shared weights before one optimizer step. A checkpoint is written atomically after every epoch and
training resumes from it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from autoprune._types import Batch
from autoprune.errors import CheckpointError, TrainingError
from autoprune.models import save_checkpoint
from autoprune.models.checkpoint import read_checkpoint
from autoprune.precision import autocast, check_device_supports, check_precision, prepare_input, training_layout
from autoprune.supernet.supernet import SubnetSampler, Supernet
from autoprune.training import make_progress, make_sgd

#: Sources of the soft predictions the smaller sub-networks learn (:attr:`SupernetConfig.teacher`).
TEACHERS: tuple[str, ...] = ("largest", "dense")


@dataclass(frozen=True)
class SupernetConfig:
    """How to train the supernet.

    Attributes:
        epochs: Passes over the training set.
        lr: Peak learning rate (SGD, Nesterov momentum 0.9, cosine decay).
        weight_decay: L2 penalty on conv/linear weights.
        num_random: Random sub-networks per step besides the largest and the smallest.
        distill: Train the smaller sub-networks on soft predictions (of ``teacher``) instead of the labels.
        teacher: Whose soft predictions: ``largest`` (in-place distillation: the largest sub-network of the
            same step, trained on the labels) or ``dense`` (a frozen copy of the dense model the supernet
            starts from; the largest sub-network then learns its labels *and* the dense model's soft
            predictions, so it stays near the dense model). ``dense`` costs one forward pass more per step.
        temperature: Distillation temperature.
        seed: Seed of the sub-network sampling.
        precision: Arithmetic of the training steps, ``fp32`` or ``bf16`` (mixed precision, see
            :mod:`autoprune.precision`).
    """

    epochs: int = 5
    lr: float = 0.02
    weight_decay: float = 5e-5
    num_random: int = 2
    distill: bool = True
    teacher: str = "largest"
    temperature: float = 1.0
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        for name in ("epochs", "num_random"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if not self.lr > 0 or not self.temperature > 0:
            raise ValueError(f"lr={self.lr} and temperature={self.temperature} must be > 0")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher={self.teacher!r} must be one of {', '.join(TEACHERS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SupernetHistory:
    """Per epoch: mean loss of the largest sub-network and of the distilled ones, and the epoch's training time.

    ``epoch_seconds`` is kept across resumed runs (so its sum is the whole training's time, where a report's
    wall time covers only the last run); a checkpoint written before it was recorded leaves it shorter than
    the losses.
    """

    largest_loss: list[float] = field(default_factory=list)
    distill_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


def _soft_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean") * t * t


def train_supernet(
    supernet: Supernet,
    sampler: SubnetSampler,
    train_loader: Iterable[Batch],
    config: SupernetConfig,
    *,
    device: torch.device | str = "cpu",
    checkpoint: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, SupernetHistory], None] | None = None,
) -> SupernetHistory:
    """Train ``supernet``'s shared weights with the sandwich rule, resuming from ``checkpoint`` if present.

    Args:
        supernet: The supernet (its model is trained in place).
        sampler: Gives the largest, smallest and random sub-networks (a search space).
        train_loader: Training batches.
        config: Hyper-parameters.
        device: Where to train.
        checkpoint: Training state file, written after every epoch; if it exists, training resumes
            after its last finished epoch.
        meta: Extra provenance stored in the checkpoint.
        progress: Show a progress bar.
        on_epoch: Called with the epoch index and the history after every finished (and saved) epoch.

    Raises:
        TrainingError: a loss became NaN/inf (the weights of the last finished epoch are restored).
    """
    model = supernet.model.to(device)
    check_device_supports(config.precision, device)
    # the dense teacher: a frozen copy of the weights the supernet starts from (the caller loads the dense
    # model into supernet.model before a resumed run loads its checkpoint, so a resumed run copies it too)
    dense_teacher = None
    if config.teacher == "dense":
        with supernet.gates.detached():  # the copy carries no gates: always the whole dense model
            dense_teacher = copy.deepcopy(model).eval().requires_grad_(False)
    distributed = dist.is_available() and dist.is_initialized()
    # under torchrun every rank trains the same sub-networks (same seed) on its shard of the data;
    # gradients are averaged once per step (no_sync for all but the last backward)
    net: torch.nn.Module = DistributedDataParallel(model) if distributed else model
    is_main = not distributed or dist.get_rank() == 0
    optimizer = make_sgd(model, config.lr, config.weight_decay)
    steps = max(1, len(train_loader)) * max(1, config.epochs)  # type: ignore[arg-type]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    history = SupernetHistory()
    start_epoch = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        start_epoch, history = _resume(ckpt_path, supernet, optimizer, scheduler)
    rng = np.random.default_rng([config.seed, start_epoch])
    if dense_teacher is not None and config.precision == "bf16":
        dense_teacher.to(memory_format=torch.channels_last)
    with make_progress(progress) as bar, training_layout(model, config.precision):
        task = bar.add_task("supernet", total=steps, completed=start_epoch * (steps // max(1, config.epochs)),
                            status="")
        for epoch in range(start_epoch, config.epochs):
            good = {k: v.detach().clone() for k, v in model.state_dict().items()}
            started = time.perf_counter()
            model.train()
            big_sum = small_sum = 0.0
            n = 0
            for x, y in train_loader:
                x, y = prepare_input(x.to(device), config.precision), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                subnets = [sampler.smallest()] + [sampler.random_choice(rng) for _ in range(config.num_random)]
                supernet.activate(sampler.largest())
                with _no_sync(net, last=not subnets):
                    with autocast(config.precision, device):
                        logits = net(x).float()
                        loss = F.cross_entropy(logits, y)
                        if dense_teacher is not None:
                            with torch.no_grad():
                                teacher = dense_teacher(x).float()
                            loss = loss + _soft_loss(logits, teacher, config.temperature)
                    _check(loss, epoch, model, good)
                    loss.backward()
                if dense_teacher is None:
                    teacher = logits.detach()
                small_losses = []
                for i, counts in enumerate(subnets):
                    supernet.activate(counts)
                    with _no_sync(net, last=i == len(subnets) - 1):
                        with autocast(config.precision, device):
                            out = net(x).float()
                            if config.distill:
                                sub = _soft_loss(out, teacher, config.temperature)
                            else:
                                sub = F.cross_entropy(out, y)
                        _check(sub, epoch, model, good)
                        sub.backward()
                    small_losses.append(sub.item())
                supernet.activate(None)
                optimizer.step()
                scheduler.step()
                big_sum += loss.item()
                small_sum += float(np.mean(small_losses)) if small_losses else 0.0
                n += 1
                bar.update(task, advance=1, status=f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.3f}")
            history.largest_loss.append(big_sum / max(1, n))
            history.distill_loss.append(small_sum / max(1, n))
            history.epoch_seconds.append(round(time.perf_counter() - started, 3))
            if ckpt_path is not None and is_main:
                _save(ckpt_path, supernet, optimizer, scheduler, epoch + 1, history, config, meta)
            if on_epoch is not None and is_main:
                on_epoch(epoch, history)
    supernet.activate(None)
    return history


def _no_sync(net: torch.nn.Module, *, last: bool) -> contextlib.AbstractContextManager[Any]:
    if isinstance(net, DistributedDataParallel) and not last:
        return net.no_sync()
    return contextlib.nullcontext()


def _check(loss: torch.Tensor, epoch: int, model: torch.nn.Module, good: dict[str, torch.Tensor]) -> None:
    if not torch.isfinite(loss):
        model.load_state_dict(good)
        raise TrainingError(
            f"supernet training: loss became {loss.item()} in epoch {epoch + 1}; the weights of the last finished "
            "epoch were restored (and its checkpoint kept). Lower the learning rate."
        )


def _save(
    path: Path,
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epochs_done: int,
    history: SupernetHistory,
    config: SupernetConfig,
    meta: dict[str, Any] | None,
) -> None:
    state_meta = {
        **(meta or {}),
        "kind": "autoprune-supernet",
        "criterion": supernet.criterion,
        "input_shape": list(supernet.input_shape),
        "scores": {k: v.tolist() for k, v in supernet.scores.items()},
        "epochs_done": epochs_done,
        "history": asdict(history),
        "config": config.to_dict(),
    }
    save_checkpoint(supernet.model, path, state_meta)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               _optim_path(path).with_suffix(".tmp"))
    _optim_path(path).with_suffix(".tmp").replace(_optim_path(path))


def _optim_path(path: Path) -> Path:
    return path.with_name(path.stem + ".optim.pt")


def _resume(
    path: Path,
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[int, SupernetHistory]:
    state, meta = read_checkpoint(path)
    if meta.get("kind") != "autoprune-supernet":
        raise CheckpointError(f"{path} is not a supernet checkpoint; remove it or choose another --out")
    try:
        supernet.model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"supernet checkpoint {path} does not fit this model: {str(exc)[:200]}") from None
    optim_file = _optim_path(path)
    if optim_file.exists():
        try:
            extra = torch.load(optim_file, map_location="cpu", weights_only=True)
            optimizer.load_state_dict(extra["optimizer"])
            scheduler.load_state_dict(extra["scheduler"])
        except Exception as exc:
            raise CheckpointError(f"optimizer state {optim_file} is corrupt ({exc}); delete it to restart the "
                                  "learning-rate schedule from the saved weights") from None
    hist = meta.get("history", {})
    return int(meta.get("epochs_done", 0)), SupernetHistory(
        largest_loss=list(hist.get("largest_loss", [])), distill_loss=list(hist.get("distill_loss", [])),
        epoch_seconds=list(hist.get("epoch_seconds", [])),
    )
