"""Top-k accuracy and loss of a model on a data loader."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from autoprune._device import model_device


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of a model on a set of samples (fractions in 0..1)."""

    top1: float
    top5: float
    loss: float
    samples: int


def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> Accuracy:
    """Top-1/top-5 accuracy and mean cross-entropy of ``model`` in eval mode.

    Args:
        model: The classifier (its training flag is restored afterwards).
        loader: Yields ``(inputs, labels)`` batches.
        device: Where to run (default: the device of the model's parameters).
        max_batches: Stop after this many batches (partial evaluation for low fidelity).

    Returns:
        :class:`Accuracy`; top-5 equals top-1 when the model has fewer than 5 classes.
    """
    if device is None:
        device = model_device(model)
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    try:
        with torch.inference_mode():
            for i, (x, y) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                k = min(5, logits.shape[1])
                topk = logits.topk(k, dim=1).indices
                hits = topk.eq(y.unsqueeze(1))
                correct1 += int(hits[:, 0].sum())
                correct5 += int(hits.any(dim=1).sum())
                seen += y.numel()
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the loader yielded no samples: cannot compute accuracy on an empty dataset")
    return Accuracy(top1=correct1 / seen, top5=correct5 / seen, loss=loss_sum / seen, samples=seen)
