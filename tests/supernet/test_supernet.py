"""Supernet: gated sub-networks equal extracted ones, shared weights stay shared, save/load, evaluator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from autoprune.data import load_dataset
from autoprune.errors import AutoPruneError, CheckpointError
from autoprune.evaluate import SupernetEvaluator
from autoprune.metrics import count_macs, evaluate_accuracy
from autoprune.models import build_model
from autoprune.supernet import Supernet, adaptive_bn

SHAPE = (1, 3, 16, 16)


def _random_counts(net: Supernet, rng: np.random.Generator) -> dict[str, int]:
    return {g.name: int(rng.integers(1, g.channels + 1)) for g in net.structure.groups}


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2"])
def test_gated_supernet_equals_extracted_subnetwork(name: str, randomize_bn: Callable[[nn.Module], nn.Module]) -> None:
    torch.manual_seed(0)
    net = Supernet(randomize_bn(build_model(name, num_classes=10, in_channels=3)), SHAPE)
    rng = np.random.default_rng(0)
    x = torch.randn(4, *SHAPE[1:])
    calib = [(torch.randn(8, *SHAPE[1:]), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    for _ in range(3):
        counts = _random_counts(net, rng)
        extracted = net.extract(counts)
        with torch.no_grad(), net.active(counts):
            net.eval()
            torch.testing.assert_close(net(x), extracted(x), atol=1e-5, rtol=1e-4)
        assert count_macs(extracted, SHAPE) == net.predict_macs(counts)
        # with adaptive BN: recalibrating the gated supernet == recalibrating the extracted model
        recalibrated = net.extract(counts, calibration=calib, bn_batches=3)
        state = {k: v.clone() for k, v in net.model.state_dict().items()}
        with torch.no_grad(), net.active(counts):
            adaptive_bn(net, calib, 3)
            torch.testing.assert_close(net(x), recalibrated(x), atol=1e-5, rtol=1e-4)
        net.model.load_state_dict(state)


def test_gates_follow_the_dtype_of_each_output_within_one_subnetwork() -> None:
    # the masks are placed once per sub-network and per (device, dtype) of the outputs they multiply
    torch.manual_seed(0)
    net = Supernet(build_model("resnet20", num_classes=10, in_channels=3), SHAPE).eval()
    counts = _random_counts(net, np.random.default_rng(1))
    extracted = net.extract(counts).double()
    x = torch.randn(2, *SHAPE[1:])
    with torch.no_grad(), net.active(counts):
        net.model.double()
        out64 = net(x.double())
        net.model.float()  # masks placed in float64 first: float32 outputs must get their own
        out32 = net(x)
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    expected = extracted(x.double())
    torch.testing.assert_close(out64, expected)
    torch.testing.assert_close(out32.double(), expected, atol=1e-4, rtol=1e-4)


def test_gates_leave_shared_weights_alone_and_block_gradients() -> None:
    torch.manual_seed(0)
    net = Supernet(build_model("resnet20", num_classes=10, in_channels=3), SHAPE)
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    group = net.structure.group("layer1.0.conv1")
    counts = {group.name: 4}
    net.train()
    with net.active(counts):
        net(torch.randn(2, *SHAPE[1:])).sum().backward()
    for k, v in net.model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(before[k], v), k
    kept = set(net.kept_indices(group.name, 4))
    grad = net.model.layer1[0].conv1.weight.grad
    assert grad is not None
    dropped = [c for c in range(group.channels) if c not in kept]
    assert torch.all(grad[dropped] == 0)
    assert torch.any(grad[sorted(kept)] != 0)


def test_rankings_are_nested() -> None:
    net = Supernet(build_model("resnet20", num_classes=10, in_channels=3), SHAPE)
    for g in net.structure.groups:
        previous: set[int] = set()
        for k in range(1, g.channels + 1):
            kept = set(net.kept_indices(g.name, k))
            assert len(kept) == k and previous <= kept
            previous = kept


def test_save_and_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = Supernet(build_model("resnet20", num_classes=10, in_channels=3), SHAPE, criterion="l2")
    path = net.save(tmp_path / "supernet.pt", {"model": "resnet20"})
    loaded, meta = Supernet.load(path, build_model("resnet20", num_classes=10, in_channels=3))
    assert meta["model"] == "resnet20" and loaded.criterion == "l2"
    counts = _random_counts(net, np.random.default_rng(1))
    x = torch.randn(2, *SHAPE[1:])
    with torch.no_grad():
        torch.testing.assert_close(net.extract(counts)(x), loaded.extract(counts)(x))
    with pytest.raises(CheckpointError, match="not an autoprune supernet"):
        from autoprune.models import save_checkpoint

        save_checkpoint(net.model, tmp_path / "plain.pt")
        Supernet.load(tmp_path / "plain.pt", build_model("resnet20", num_classes=10, in_channels=3))


def test_bad_config_is_refused() -> None:
    net = Supernet(build_model("resnet20", num_classes=10, in_channels=3), SHAPE)
    with pytest.raises(AutoPruneError, match="unknown group"):
        net.activate({"nope": 3})
    with pytest.raises(AutoPruneError, match="keeps 0 channels"):
        net.activate({"layer1.0.conv1": 0})


@pytest.fixture(scope="module")
def digits_evaluator() -> tuple[SupernetEvaluator, object]:
    torch.manual_seed(0)
    splits = load_dataset("digits")
    net = Supernet(build_model("resnet20", num_classes=10, in_channels=1), splits.input_shape())
    ev = SupernetEvaluator(net, splits.val_loader(32), splits.calibration_loader(32, seed=0), bn_batches=2)
    return ev, splits


def test_evaluator_matches_an_independent_accuracy_and_caches(
    digits_evaluator: tuple[SupernetEvaluator, object],
) -> None:
    ev, splits = digits_evaluator
    counts = {g.name: max(1, g.channels // 2) for g in ev.supernet.structure.groups}
    first = ev.evaluate(counts)
    assert not first.cached and first.fidelity == ev.max_fidelity
    model = ev.supernet.extract(counts, calibration=ev.calibration, bn_batches=2)
    independent = evaluate_accuracy(model, splits.val_loader(32))  # type: ignore[attr-defined]
    assert first.accuracy == pytest.approx(independent.top1)
    assert first.macs == count_macs(model, splits.input_shape())  # type: ignore[attr-defined]
    computed = ev.stats.batches_computed
    again = ev.evaluate(dict(counts))
    assert again.cached and again.accuracy == first.accuracy
    assert ev.stats.batches_computed == computed and ev.stats.cache_hits >= 1


def test_fidelity_grows_incrementally(digits_evaluator: tuple[SupernetEvaluator, object]) -> None:
    ev, _ = digits_evaluator
    counts = {g.name: g.channels for g in ev.supernet.structure.groups}
    counts[ev.supernet.group_names[0]] = 8
    before = ev.stats.batches_computed
    low = ev.evaluate(counts, fidelity=2)
    assert low.fidelity == 2 and ev.stats.batches_computed == before + 2
    high = ev.evaluate(counts, fidelity=ev.max_fidelity)
    assert ev.stats.batches_computed == before + ev.max_fidelity  # only the missing batches ran
    assert high.samples > low.samples
    with pytest.raises(ValueError, match="fidelity"):
        ev.evaluate(counts, fidelity=ev.max_fidelity + 1)
