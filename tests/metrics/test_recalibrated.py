"""The dense model is also scored the way pruned sub-networks are (adaptive BN), so stale statistics show."""

from __future__ import annotations

import torch
from torch import nn

from autoprune.data import load_dataset
from autoprune.metrics import evaluate_accuracy
from autoprune.report import recalibrated
from autoprune.seed import seed_everything
from autoprune.training import TrainConfig, train


def test_recalibration_recovers_a_model_with_stale_batchnorm_statistics() -> None:
    seed_everything(0)
    splits = load_dataset("digits", augment=False)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10))
    train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=6, lr=0.05), progress=False)
    fresh = evaluate_accuracy(model, splits.test_loader()).top1
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
    bn.running_mean += 3.0  # what a short training with momentum 0.01 leaves behind: statistics far from the data
    bn.running_var *= 50.0
    stale = evaluate_accuracy(model, splits.test_loader()).top1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    again = recalibrated(model, list(splits.calibration_loader(64, 4)), splits.test_loader())
    assert again is not None and again["bn_batches"] == 4
    assert stale < fresh - 0.2  # the stale statistics hurt ...
    assert again["accuracy"] > fresh - 0.05  # ... and adaptive BN on a few batches repairs them
    assert 0 < again["accuracy_se"] < 0.03
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model itself is untouched


def test_a_model_without_batchnorm_has_nothing_to_recalibrate() -> None:
    splits = load_dataset("digits", augment=False)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert recalibrated(model, list(splits.calibration_loader(64, 2)), splits.test_loader()) is None
