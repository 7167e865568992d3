"""Sandwich training: resumable, NaN-safe, and its sub-networks beat the same structure cut from the dense model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from autoprune.data import load_dataset
from autoprune.errors import CheckpointError, TrainingError
from autoprune.evaluate import SupernetEvaluator
from autoprune.metrics import evaluate_accuracy
from autoprune.models import build_model
from autoprune.pipelines.oneshot import SpaceSampler, build_supernet
from autoprune.search_spaces import auto_space
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet, SupernetConfig, train_supernet
from autoprune.training import TrainConfig, train


@pytest.fixture(scope="module")
def dense() -> tuple[torch.nn.Module, object]:
    seed_everything(0)
    splits = load_dataset("digits")
    model = build_model("resnet20", num_classes=10, in_channels=1)
    train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=8, lr=0.05), progress=False)
    return model, splits


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
def test_supernet_subnet_beats_cut_and_nears_finetuned(dense: tuple[torch.nn.Module, object]) -> None:
    model, splits = dense
    shape = splits.input_shape()  # type: ignore[attr-defined]
    cut_net = Supernet(copy.deepcopy(model), shape)
    space = auto_space(cut_net.structure, target=0.5, min_ratio=0.25, step=0.125)
    counts = space.uniform(1.0)  # the widest uniform-ish sub-network within 50% MACs
    assert space.cost(counts) <= 0.5 + 1e-9
    calib = splits.calibration_loader(64, seed=0)  # type: ignore[attr-defined]
    val = splits.val_loader()  # type: ignore[attr-defined]

    cut = cut_net.extract(counts, calibration=calib, bn_batches=5)
    cut_acc = evaluate_accuracy(cut, val).top1
    finetuned = copy.deepcopy(cut)
    train(finetuned, splits.train_loader(64, seed=1), TrainConfig(epochs=6, lr=0.02), progress=False)  # type: ignore[attr-defined]
    ft_acc = evaluate_accuracy(finetuned, val).top1

    run = build_supernet(copy.deepcopy(model), shape, space, splits.train_loader(64, seed=2),  # type: ignore[attr-defined]
                         SupernetConfig(epochs=6, lr=0.02, num_random=2), progress=False)
    sub = run.supernet.extract(counts, calibration=calib, bn_batches=5)
    sub_acc = evaluate_accuracy(sub, val).top1
    print(f"cut {cut_acc:.3f}  supernet {sub_acc:.3f}  finetuned {ft_acc:.3f}")
    assert sub_acc >= cut_acc + 0.03  # clearly better than cutting the dense model
    assert sub_acc >= ft_acc - 0.05  # close to finetuning the same structure separately


def test_training_resumes_from_its_checkpoint(dense: tuple[torch.nn.Module, object], tmp_path: Path) -> None:
    model, splits = dense
    shape = splits.input_shape()  # type: ignore[attr-defined]
    net = Supernet(copy.deepcopy(model), shape)
    space = auto_space(net.structure, target=0.5)
    ckpt = tmp_path / "supernet.pt"
    loader = list(splits.train_loader(128, seed=0))[:3]  # type: ignore[attr-defined]
    h1 = train_supernet(net, SpaceSampler(space), loader, SupernetConfig(epochs=1), checkpoint=ckpt, progress=False)
    assert len(h1.largest_loss) == 1 and ckpt.exists()
    after_one = {k: v.clone() for k, v in net.model.state_dict().items()}
    # a fresh process: new model object, same checkpoint, more epochs -> continues at epoch 2
    fresh = Supernet(copy.deepcopy(model), shape, scores=net.scores)
    h2 = train_supernet(fresh, SpaceSampler(space), loader, SupernetConfig(epochs=2), checkpoint=ckpt, progress=False)
    assert len(h2.largest_loss) == 2 and h2.largest_loss[0] == h1.largest_loss[0]
    assert any(not torch.equal(after_one[k], v) for k, v in fresh.model.state_dict().items())
    # asking for epochs already done trains nothing
    again = Supernet(copy.deepcopy(model), shape, scores=net.scores)
    h3 = train_supernet(again, SpaceSampler(space), loader, SupernetConfig(epochs=2), checkpoint=ckpt, progress=False)
    assert h3.largest_loss == h2.largest_loss
    for k, v in again.model.state_dict().items():
        torch.testing.assert_close(v, fresh.model.state_dict()[k])


def test_corrupt_checkpoint_is_named(dense: tuple[torch.nn.Module, object], tmp_path: Path) -> None:
    model, splits = dense
    net = Supernet(copy.deepcopy(model), splits.input_shape())  # type: ignore[attr-defined]
    ckpt = tmp_path / "supernet.pt"
    ckpt.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match=r"supernet\.pt"):
        train_supernet(net, SpaceSampler(auto_space(net.structure)), [], SupernetConfig(epochs=1),
                       checkpoint=ckpt, progress=False)


def test_nan_loss_stops_and_restores(dense: tuple[torch.nn.Module, object]) -> None:
    model, splits = dense
    net = Supernet(copy.deepcopy(model), splits.input_shape())  # type: ignore[attr-defined]
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    x, y = next(iter(splits.train_loader(32, seed=0)))  # type: ignore[attr-defined]
    with pytest.raises(TrainingError, match="nan"):
        train_supernet(net, SpaceSampler(auto_space(net.structure)), [(x * float("nan"), y)],
                       SupernetConfig(epochs=1), progress=False)
    for k, v in net.model.state_dict().items():
        assert torch.equal(before[k], v), k


def test_evaluator_counts_for_the_supernet(dense: tuple[torch.nn.Module, object]) -> None:
    model, splits = dense
    net = Supernet(copy.deepcopy(model), splits.input_shape())  # type: ignore[attr-defined]
    space = auto_space(net.structure, target=0.5)
    ev = SupernetEvaluator(net, splits.val_loader(), splits.calibration_loader(64, seed=0), bn_batches=2)  # type: ignore[attr-defined]
    r = ev.evaluate(space.uniform(1.0))
    assert r.macs_ratio <= 0.5 + 1e-9 and 0.0 <= r.accuracy <= 1.0


def test_sampling_near_budgets_draws_structures_within_them() -> None:
    """--sample-near: every random sub-network costs a budget of the range (filled to it, within one
    rounding step), shapes differ, and the sandwich ends stay the space's own largest and smallest."""
    import numpy as np

    from autoprune.engine.structure import ModelStructure
    from autoprune.errors import AutoPruneError

    model = build_model("resnet20", num_classes=10, in_channels=1)
    space = auto_space(ModelStructure(model, (1, 1, 8, 8)), target=0.5)
    near = SpaceSampler(space, near=(0.3, 0.4))
    rng = np.random.default_rng(0)
    drawn = [near.random_choice(rng) for _ in range(30)]
    costs = [space.cost(c) for c in drawn]
    assert max(costs) <= 0.4 + 1e-9 and min(costs) >= 0.28  # filled up to a budget in [0.3, 0.4]
    assert len({tuple(sorted(c.items())) for c in drawn}) > 20
    whole = [SpaceSampler(space).random_choice(rng) for _ in range(30)]
    assert max(space.cost(c) for c in whole) > 0.45  # the default draws over the whole space
    assert near.largest() == space.largest() and near.smallest() == space.smallest()
    with pytest.raises(AutoPruneError, match="smallest sub-network keeps"):
        SpaceSampler(space, near=(space.min_cost() / 2, 0.4))
    with pytest.raises(AutoPruneError, match="0 < LOW <= HIGH <= 1"):
        SpaceSampler(space, near=(0.5, 0.3))


def test_dense_teacher_is_the_frozen_starting_model_also_after_a_resume(
    dense: tuple[torch.nn.Module, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """teacher='dense': the soft targets are the dense model's own predictions (eval mode), also in a run
    resumed from a checkpoint whose weights have moved away from it; the default teacher trains differently."""
    from autoprune.supernet import sandwich

    model, splits = dense
    shape = splits.input_shape()  # type: ignore[attr-defined]
    loader = list(splits.train_loader(128, seed=0))[:3]  # type: ignore[attr-defined]
    space = auto_space(Supernet(copy.deepcopy(model), shape).structure, target=0.5)
    seen: list[torch.Tensor] = []
    real = sandwich._soft_loss
    monkeypatch.setattr(sandwich, "_soft_loss",
                        lambda out, teacher, t: seen.append(teacher.clone()) or real(out, teacher, t))

    def run(config: SupernetConfig, ckpt: Path | None = None) -> object:
        seen.clear()
        net = Supernet(copy.deepcopy(model), shape)  # the dense weights, as the command loads them
        return train_supernet(net, SpaceSampler(space), loader, config, checkpoint=ckpt, progress=False)

    expected = copy.deepcopy(model).eval()(loader[0][0]).detach()
    ckpt = tmp_path / "sn.pt"
    h_dense = run(SupernetConfig(epochs=1, teacher="dense"), ckpt)
    torch.testing.assert_close(seen[0], expected)  # the largest sub-network's KL term, first step
    run(SupernetConfig(epochs=2, teacher="dense"), ckpt)  # resumed at epoch 2: still the dense predictions
    torch.testing.assert_close(seen[0], expected)
    assert len(seen) == 3 * (1 + 1 + 2)  # per step: the largest, the smallest and 2 random sub-networks
    h_inplace = run(SupernetConfig(epochs=1))
    assert h_inplace.largest_loss != h_dense.largest_loss  # type: ignore[attr-defined]
    assert not torch.allclose(seen[0], expected)  # in place: the largest sub-network's training-mode logits
    with pytest.raises(ValueError, match="teacher='teacher'"):
        SupernetConfig(teacher="teacher")


def test_without_distillation_every_subnetwork_learns_the_labels(
    dense: tuple[torch.nn.Module, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """distill=False: no soft loss at all; the sub-networks' loss is the cross-entropy with the labels."""
    from autoprune.supernet import sandwich

    model, splits = dense
    shape = splits.input_shape()  # type: ignore[attr-defined]
    loader = list(splits.train_loader(128, seed=0))[:2]  # type: ignore[attr-defined]
    space = auto_space(Supernet(copy.deepcopy(model), shape).structure, target=0.5)
    soft: list[int] = []
    real = sandwich._soft_loss
    monkeypatch.setattr(sandwich, "_soft_loss", lambda out, teacher, t: soft.append(1) or real(out, teacher, t))

    def run(config: SupernetConfig) -> object:
        net = Supernet(copy.deepcopy(model), shape)
        return train_supernet(net, SpaceSampler(space), loader, config, progress=False)

    labels = run(SupernetConfig(epochs=1, distill=False))
    assert soft == []
    distilled = run(SupernetConfig(epochs=1))
    assert len(soft) == 2 * 3  # per step: the smallest and 2 random sub-networks
    # a cross-entropy with the labels is above the KL divergence from the largest sub-network's predictions,
    # which the smaller ones of a trained model start out close to
    assert labels.distill_loss[0] > distilled.distill_loss[0]  # type: ignore[attr-defined]
