"""The standard pipeline end to end on digits, and the training loop's guards."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autoprune.data import load_dataset
from autoprune.engine.plan import apply_plan
from autoprune.engine.pruner import PruneConfig
from autoprune.errors import TrainingError
from autoprune.metrics import count_cost, evaluate_accuracy
from autoprune.models import build_model
from autoprune.pipelines.standard import StandardConfig, run_standard
from autoprune.seed import seed_everything
from autoprune.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, object]:
    seed_everything(0)
    splits = load_dataset("digits", augment=False)  # 4 epochs: learns fast without augmentation
    model = build_model("resnet20", num_classes=10, in_channels=1)
    train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=4, lr=0.05, batch_size=64), progress=False)
    return model, splits


def test_training_learns_digits(trained: tuple[nn.Module, object]) -> None:
    model, splits = trained
    acc = evaluate_accuracy(model, splits.val_loader()).top1  # type: ignore[attr-defined]
    assert acc > 0.8


@pytest.mark.parametrize("granularity", ["channel", "kernel"])
def test_standard_pipeline_meets_target_and_keeps_masks_zero(
    trained: tuple[nn.Module, object], granularity: str
) -> None:
    model, splits = trained
    shape = splits.input_shape(1)  # type: ignore[attr-defined]
    config = StandardConfig(
        prune=PruneConfig(target_macs=0.5, granularity=granularity, criterion="l1"),
        finetune=TrainConfig(epochs=1, lr=0.01, batch_size=64),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_standard(
        model, shape, config,
        train_loader=splits.train_loader(64, seed=0),  # type: ignore[attr-defined]
        val_loader=splits.val_loader(),  # type: ignore[attr-defined]
        progress=False,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input model untouched
    dense = count_cost(model, shape)
    cost = count_cost(result.model, shape)
    if granularity == "channel":
        assert 0.48 <= cost.macs / dense.macs <= 0.5
    else:
        assert cost.macs == dense.macs
        assert 0.49 <= cost.effective_macs / dense.macs <= 0.5 + 1e-9
        params = dict(result.model.named_parameters())
        assert result.plan.masks
        for name, mask in result.plan.masks.items():
            assert torch.all(params[name][~mask] == 0), name  # finetuning kept masked weights exactly zero
    r = result.rounds[0]
    assert r.val_accuracy_after_finetune is not None
    assert r.val_accuracy_after_finetune >= r.val_accuracy_after_prune - 0.05
    assert r.val_accuracy_after_finetune > 0.6


def test_gradual_pruning_plan_rebuilds_the_final_architecture(trained: tuple[nn.Module, object]) -> None:
    model, splits = trained
    shape = splits.input_shape(1)  # type: ignore[attr-defined]
    config = StandardConfig(prune=PruneConfig(target_macs=0.4, round_to=1),
                            finetune=TrainConfig(epochs=0), rounds=3)
    result = run_standard(model, shape, config, train_loader=[], val_loader=splits.val_loader(),  # type: ignore[attr-defined]
                          progress=False)
    assert [round(r.target, 4) for r in result.rounds] == [round(0.4 ** (i / 3), 4) for i in (1, 2, 3)]
    rebuilt = apply_plan(model, result.plan)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in result.model.parameters()]
    ratio = count_cost(rebuilt, shape).macs / count_cost(model, shape).macs
    assert 0.38 <= ratio <= 0.4 + 1e-9


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_state() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    good = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 4)
    batches = [(x, torch.zeros(8, dtype=torch.long)), (x * math.nan, torch.zeros(8, dtype=torch.long))]
    with pytest.raises(TrainingError, match="loss became nan"):
        train(model, batches, TrainConfig(epochs=1, lr=0.1), progress=False)
    assert all(torch.equal(good[k], v) for k, v in model.state_dict().items())
