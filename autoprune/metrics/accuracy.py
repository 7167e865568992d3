"""Top-k accuracy and loss of a model on a data loader."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autoprune._device import model_device


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of a model on a set of samples (fractions in 0..1).

    ``correct`` (only with ``per_sample=True``): per sample, 1 if the top-1 prediction is right, in loader
    order, for paired comparisons of two models on the same samples (:func:`paired_mean_se`).
    """

    top1: float
    top5: float
    loss: float
    samples: int
    correct: np.ndarray | None = field(default=None, repr=False, compare=False)


def paired_mean_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of ``a - b`` over the same samples and its standard error (paired: shared difficulty cancels)."""
    if a.shape != b.shape:
        raise ValueError(f"per-sample records of {a.shape} and {b.shape} cannot be paired: score the same samples")
    d = a.astype(np.float64) - b.astype(np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    return float(d.mean()), se


def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
    per_sample: bool = False,
) -> Accuracy:
    """Top-1/top-5 accuracy and mean cross-entropy of ``model`` in eval mode.

    Args:
        model: The classifier (its training flag is restored afterwards).
        loader: Yields ``(inputs, labels)`` batches.
        device: Where to run (default: the device of the model's parameters).
        max_batches: Stop after this many batches (partial evaluation for low fidelity).
        per_sample: Also keep each sample's top-1 hit (``Accuracy.correct``) for paired comparisons.

    Returns:
        :class:`Accuracy`; top-5 equals top-1 when the model has fewer than 5 classes.
    """
    if device is None:
        device = model_device(model)
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    hits1: list[np.ndarray] = []
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
                if per_sample:
                    hits1.append(hits[:, 0].cpu().numpy().astype(np.uint8))
                correct5 += int(hits.any(dim=1).sum())
                seen += y.numel()
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the loader yielded no samples: cannot compute accuracy on an empty dataset")
    return Accuracy(top1=correct1 / seen, top5=correct5 / seen, loss=loss_sum / seen, samples=seen,
                    correct=np.concatenate(hits1) if per_sample else None)
