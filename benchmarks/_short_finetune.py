"""A candidate's score after a few finetune steps (issue 16: does a short finetune rank structures better than
shared weights alone?).

The candidate is extracted (from a supernet with its shared weights, or cut from the dense model), BatchNorm
recalibrated, trained ``steps`` SGD steps on the same fixed training batches for every candidate (cosine
schedule to 0, same seed), then scored on validation. Only training data is trained on; the score is read on
validation, so it is a signal a search may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from autoprune.metrics import evaluate_accuracy
from autoprune.seed import seed_everything
from autoprune.training import TrainConfig, train


@dataclass
class Score:
    accuracy: float


class ShortFinetuneScorer:
    """``score(counts)``: validation accuracy of the candidate after ``len(batches)`` finetune steps.

    Args:
        net: A :class:`~autoprune.supernet.Supernet` (or a dense model wrapped in one: "cut").
        batches: The training batches, the same for every candidate (their number is the step count).
        val: Validation batches.
        calibration: Adaptive-BN batches used at extraction.
        lr: Peak learning rate of the short cosine schedule.
        seed: Seeds every finetune alike.
    """

    def __init__(self, net: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], val: list[Any],
                 calibration: list[Any], *, lr: float, seed: int = 0, precision: str = "fp32") -> None:
        if not batches:
            raise ValueError("a short finetune needs at least one training batch")
        self.net, self.batches, self.val, self.calibration = net, batches, val, calibration
        self.lr, self.seed, self.precision = lr, seed, precision

    def score(self, counts: dict[str, int]) -> Score:
        model = self.net.extract(counts, calibration=self.calibration, bn_batches=len(self.calibration))
        seed_everything(self.seed)
        train(model, self.batches, TrainConfig(epochs=1, lr=self.lr, precision=self.precision), progress=False)
        return Score(float(evaluate_accuracy(model, self.val).top1))
