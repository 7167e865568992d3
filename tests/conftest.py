"""Session fixtures shared by the search, env and analysis tests: a small trained supernet on digits.

Built once per test session (about 10 s on 2 CPU cores): ResNet-20 trained 4 epochs on the embedded
digits data, then 1 sandwich epoch over the bundled resnet20 space at 50% MACs. Tests must not change it:
take :func:`copy.deepcopy` of ``supernet`` before training it further.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from autoprune.data import DataSplits, load_dataset
from autoprune.evaluate import SupernetEvaluator
from autoprune.models import build_model
from autoprune.pipelines.oneshot import build_supernet, resolve_space
from autoprune.search_spaces import SearchSpace
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet, SupernetConfig
from autoprune.training import TrainConfig, train


def _randomize_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


@pytest.fixture
def randomize_bn() -> Callable[[nn.Module], nn.Module]:
    """Give every BatchNorm2d non-trivial statistics and affine weights (torch's RNG) and put the model in
    eval mode, so that a zeroed or removed channel changes the outputs."""
    return _randomize_bn


@dataclass
class DigitsSupernet:
    """A trained dense model, its supernet and the bundled resnet20 space (target 0.5 MACs) on digits."""

    splits: DataSplits
    dense: torch.nn.Module
    supernet: Supernet
    space: SearchSpace

    def evaluator(self, *, bn_batches: int = 2, val_batch_size: int = 64) -> SupernetEvaluator:
        """A fresh evaluator (empty cache) over the validation split: 5 batches of 64 by default."""
        return SupernetEvaluator(
            self.supernet,
            self.splits.val_loader(val_batch_size),
            self.splits.calibration_loader(64, seed=0),
            bn_batches=bn_batches,
        )


@pytest.fixture(scope="session")
def digits_supernet() -> DigitsSupernet:
    seed_everything(0)
    splits = load_dataset("digits")
    model = build_model("resnet20", num_classes=10, in_channels=1)
    train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=4, lr=0.05), progress=False)
    dense = copy.deepcopy(model).eval()
    from autoprune.engine.structure import ModelStructure

    space = resolve_space(ModelStructure(model, splits.input_shape()), "resnet20", None, 0.5)
    run = build_supernet(
        model, splits.input_shape(), space, splits.train_loader(64, seed=1),
        SupernetConfig(epochs=1, lr=0.02, num_random=1, seed=0), progress=False,
    )  # fmt: skip
    run.supernet.eval()
    return DigitsSupernet(splits=splits, dense=dense, supernet=run.supernet, space=run.space)
