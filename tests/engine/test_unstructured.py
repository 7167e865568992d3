"""Mask plans (kernel, vector, fine; local and global) and keeping masked weights zero in training."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from autoprune.engine.masking import MaskEnforcer
from autoprune.engine.plan import PrunePlan, apply_masks, apply_plan
from autoprune.engine.unstructured import make_mask_plan, mask_cost
from autoprune.errors import AutoPruneError, BudgetError
from autoprune.metrics import count_cost

RESNET_SHAPE = (1, 3, 32, 32)
TINY_SHAPE = (1, 3, 16, 16)


def l1(_name: str, weight: torch.Tensor) -> torch.Tensor:
    return weight.abs()


class TinyNet(nn.Module):
    """Convs with square and non-square kernels, a hidden linear layer and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, (3, 5), padding=(1, 2), groups=2)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(num_classes=10).eval()


@pytest.fixture
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("granularity", ["kernel", "vector", "fine"])
def test_resnet_plan_meets_target(resnet: nn.Module, granularity: str, scope: str) -> None:
    plan = make_mask_plan(
        resnet, RESNET_SHAPE, granularity=granularity, target_macs=0.5, score_fn=l1, scope=scope
    )
    before = count_cost(resnet, RESNET_SHAPE)
    masked = apply_plan(resnet, plan)
    after = count_cost(masked, RESNET_SHAPE)
    assert after.macs == before.macs  # masks never change dense shapes
    assert abs(after.effective_macs / after.macs - 0.5) <= 0.01
    assert after.effective_macs <= 0.5 * after.macs  # a budget: never above
    assert plan.meta["effective_macs_ratio"] == pytest.approx(after.effective_macs / after.macs)
    assert plan.meta["scope"] == scope and plan.meta["target_macs"] == 0.5
    # the output layer is never masked
    assert "fc.weight" not in plan.masks
    assert torch.count_nonzero(masked.fc.weight) == masked.fc.weight.numel()
    params = dict(resnet.named_parameters())
    for name, mask in plan.masks.items():
        assert mask.dtype == torch.bool and mask.shape == params[name].shape
        assert mask.any()  # min_keep: no layer is emptied
        if granularity == "kernel":
            assert torch.equal(mask, mask[:, :, :1, :1].expand_as(mask))
        elif granularity == "vector":
            assert torch.equal(mask, mask[..., :1].expand_as(mask))
    # and no coarser than they should be
    if granularity == "vector":
        assert any(not torch.equal(m, m[:, :, :1, :1].expand_as(m)) for m in plan.masks.values())
    if granularity == "fine":
        assert any(not torch.equal(m, m[..., :1].expand_as(m)) for m in plan.masks.values())


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("granularity", ["kernel", "vector", "fine"])
def test_tiny_plan_shapes_and_budget(tiny: nn.Module, granularity: str, scope: str) -> None:
    plan = make_mask_plan(
        tiny, TINY_SHAPE, granularity=granularity, target_macs=0.5, score_fn=l1, scope=scope
    )
    assert set(plan.masks) == {"conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight"}
    cost = mask_cost(apply_plan(tiny, plan), TINY_SHAPE)
    assert abs(cost["effective_ratio"] - 0.5) <= 0.01
    assert cost["dense_macs"] == count_cost(tiny, TINY_SHAPE).macs
    vec = plan.masks["conv3.weight"]  # 3x5 kernels: rows are 5 wide, kernels 15
    if granularity == "vector":
        assert torch.equal(vec, vec[..., :1].expand_as(vec))
        assert not torch.equal(vec, vec[:, :, :1, :1].expand_as(vec))  # rows of one kernel differ
    if granularity != "fine":
        assert plan.meta["fine_fallback"] == ["fc1"]  # a linear weight has no kernel
    if scope == "local":  # (global keeps all of fc1: one output position makes its weights cheap)
        assert not plan.masks["fc1.weight"].all()


def test_local_keeps_same_fraction_in_every_layer(resnet: nn.Module) -> None:
    plan = make_mask_plan(resnet, RESNET_SHAPE, granularity="kernel", target_macs=0.5, score_fn=l1)
    ratios = list(plan.meta["unit_keep_ratios"].values())
    assert max(ratios) - min(ratios) < 0.02  # equal up to rounding one unit in small layers


def test_global_varies_fraction_and_respects_min_keep(resnet: nn.Module) -> None:
    plan = make_mask_plan(
        resnet, RESNET_SHAPE, granularity="kernel", target_macs=0.3, score_fn=l1, scope="global", min_keep=0.1
    )
    ratios = plan.meta["unit_keep_ratios"]
    assert max(ratios.values()) - min(ratios.values()) > 0.1
    assert min(ratios.values()) >= 0.1 - 1e-9


def single_conv() -> nn.Module:
    """A 2x2 conv (8 weights, 1 output position) in front of a linear head (2 MACs)."""
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -8.0, 3.0, -6.0, 5.0, -2.0, 7.0, -4.0]).view(2, 1, 2, 2))
    return nn.Sequential(conv, nn.Flatten(), nn.Linear(2, 1))


@pytest.mark.parametrize("scope", ["local", "global"])
def test_hand_computed_fine_mask(scope: str) -> None:
    # dense MACs = 8 (conv) + 2 (head); keeping half the conv weights leaves 4 + 2 = 0.6 of them
    model = single_conv()
    plan = make_mask_plan(model, (1, 1, 2, 2), granularity="fine", target_macs=0.6, score_fn=l1, scope=scope)
    expected = torch.tensor([False, True, False, True, True, False, True, False]).view(2, 1, 2, 2)
    assert set(plan.masks) == {"0.weight"}
    assert torch.equal(plan.masks["0.weight"], expected)  # |w| = 8, 7, 6, 5 kept
    assert plan.meta["effective_macs_ratio"] == pytest.approx(0.6)


def test_ties_keep_lower_indices() -> None:
    model = single_conv()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    plan = make_mask_plan(model, (1, 1, 2, 2), granularity="fine", target_macs=0.6, score_fn=l1)
    assert plan.masks["0.weight"].flatten().tolist() == [True] * 4 + [False] * 4


def test_plan_json_round_trip(tiny: nn.Module, tmp_path: Path) -> None:
    plan = make_mask_plan(tiny, TINY_SHAPE, granularity="vector", target_macs=0.4, score_fn=l1, meta={"x": 1})
    loaded = PrunePlan.load(plan.save(tmp_path / "plan.json"))
    assert loaded.granularity == "vector" and loaded.input_shape == plan.input_shape
    assert loaded.meta == plan.meta and loaded.meta["x"] == 1
    assert set(loaded.masks) == set(plan.masks)
    for name, mask in plan.masks.items():
        assert loaded.masks[name].dtype == torch.bool
        assert torch.equal(loaded.masks[name], mask)


def test_exclude_leaves_layer_dense(tiny: nn.Module) -> None:
    plan = make_mask_plan(
        tiny, TINY_SHAPE, granularity="fine", target_macs=0.6, score_fn=l1, exclude=["conv1"]
    )
    assert "conv1.weight" not in plan.masks
    cost = count_cost(apply_plan(tiny, plan), TINY_SHAPE)
    assert abs(cost.effective_macs / cost.macs - 0.6) <= 0.01


def test_unreachable_target_names_minimum(tiny: nn.Module) -> None:
    with pytest.raises(BudgetError, match="reachable minimum") as info:
        make_mask_plan(tiny, TINY_SHAPE, granularity="fine", target_macs=0.001, score_fn=l1, min_keep=0.05)
    found = re.search(r"reachable minimum is ([0-9.]+)", str(info.value))
    assert found is not None
    minimum = float(found.group(1))
    assert 0.001 < minimum < 0.2
    plan = make_mask_plan(tiny, TINY_SHAPE, granularity="fine", target_macs=minimum + 1e-4, score_fn=l1)
    assert plan.meta["effective_macs_ratio"] <= minimum + 1e-4


def test_bad_arguments(tiny: nn.Module) -> None:
    with pytest.raises(AutoPruneError, match="granularity"):
        make_mask_plan(tiny, TINY_SHAPE, granularity="channel", target_macs=0.5, score_fn=l1)
    with pytest.raises(BudgetError, match="must be in"):
        make_mask_plan(tiny, TINY_SHAPE, granularity="fine", target_macs=1.7, score_fn=l1)
    with pytest.raises(AutoPruneError, match="not a module"):
        make_mask_plan(tiny, TINY_SHAPE, granularity="fine", target_macs=0.5, score_fn=l1, exclude=["nope"])
    with pytest.raises(AutoPruneError, match="non-negative"):
        make_mask_plan(tiny, TINY_SHAPE, granularity="fine", target_macs=0.5, score_fn=lambda n, w: w)


def _train(model: nn.Module, enforcer: MaskEnforcer | None, steps: int = 5) -> None:
    torch.manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    if enforcer is not None:
        enforcer.attach(opt)
    for _ in range(steps):
        x, y = torch.randn(8, *TINY_SHAPE[1:]), torch.randint(0, 10, (8,))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def test_enforcer_keeps_masked_weights_zero(tiny: nn.Module) -> None:
    plan = make_mask_plan(tiny, TINY_SHAPE, granularity="kernel", target_macs=0.5, score_fn=l1)
    control = apply_plan(tiny, plan)
    _train(control, None)  # without the enforcer the zeros come back: the test can fail
    params = dict(control.named_parameters())
    assert any(params[n][~m].abs().sum() > 0 for n, m in plan.masks.items())

    before = {n: p.detach().clone() for n, p in tiny.named_parameters()}
    with MaskEnforcer(tiny, plan.masks) as enforcer:  # zeroes the weights itself, no apply_plan needed
        _train(tiny, enforcer)
    params = dict(tiny.named_parameters())
    for name, mask in plan.masks.items():
        assert torch.all(params[name][~mask] == 0.0)
        assert not torch.equal(params[name][mask], before[name][mask])
        assert params[name].grad is not None and torch.all(params[name].grad[~mask] == 0.0)


def test_enforcer_channel_masks(tiny: nn.Module) -> None:
    keep = torch.tensor([True, False] * 4)  # (out,) channel mask, broadcast over in, kh, kw
    bias_keep = torch.arange(16) % 4 != 0
    masks = {"conv1.weight": keep, "conv2.bias": bias_keep}
    with torch.no_grad():
        tiny.conv1.bias.fill_(0.1)  # the zeroed filters still pass ReLU, so they get gradients
    control = copy.deepcopy(tiny)
    apply_masks(control, masks)
    _train(control, None)
    assert control.conv1.weight[~keep].abs().sum() > 0 and control.conv2.bias[~bias_keep].abs().sum() > 0

    with MaskEnforcer(tiny, masks) as enforcer:
        _train(tiny, enforcer)
    assert torch.all(tiny.conv1.weight[~keep] == 0.0) and torch.all(tiny.conv2.bias[~bias_keep] == 0.0)
    assert torch.all(tiny.conv1.weight[keep] != 0.0) and torch.all(tiny.conv2.bias[bias_keep] != 0.0)


def test_enforcer_remove_takes_hooks_away(tiny: nn.Module) -> None:
    keep = torch.arange(10) < 5  # rows of the linear head
    enforcer = MaskEnforcer(tiny, {"fc2.weight": keep})
    _train(tiny, enforcer)
    assert torch.all(tiny.fc2.weight[~keep] == 0.0)
    enforcer.remove()
    enforcer.remove()  # idempotent
    _train(tiny, None)  # hooks gone: the masked rows learn again
    assert tiny.fc2.weight[~keep].abs().sum() > 0


def test_enforcer_rejects_bad_masks(tiny: nn.Module) -> None:
    with pytest.raises(AutoPruneError, match="unknown parameter"):
        MaskEnforcer(tiny, {"conv9.weight": torch.ones(8, dtype=torch.bool)})
    with pytest.raises(AutoPruneError, match="does not broadcast"):
        MaskEnforcer(tiny, {"conv1.weight": torch.ones(3, dtype=torch.bool)})


def test_mask_cost_matches_count_cost(tiny: nn.Module) -> None:
    masked = copy.deepcopy(tiny)
    with torch.no_grad():
        masked.conv2.weight[:4] = 0.0
    cost, reference = mask_cost(masked, TINY_SHAPE), count_cost(masked, TINY_SHAPE)
    assert cost["dense_macs"] == reference.macs and cost["effective_macs"] == reference.effective_macs
    assert cost["effective_ratio"] == pytest.approx(reference.effective_macs / reference.macs)
    assert cost["nonzero_params"] == reference.nonzero_params < cost["params"]


def test_reused_module_and_tied_weights() -> None:
    torch.manual_seed(0)
    shape = (1, 3, 8, 8)
    reused = nn.Conv2d(4, 4, 3, padding=1)  # one module called twice: masked, its MACs counted twice
    tied_a, tied_b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    tied_b.weight = tied_a.weight  # one weight in two modules: left dense
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), reused, nn.ReLU(), reused, tied_a, tied_b, nn.Conv2d(4, 2, 1)
    )
    plan = make_mask_plan(model, shape, granularity="fine", target_macs=0.7, score_fn=l1)
    assert set(plan.masks) == {"0.weight", "1.weight"}  # "6" is the output layer
    cost = count_cost(apply_plan(model, plan), shape)
    assert cost.effective_macs / cost.macs == pytest.approx(plan.meta["effective_macs_ratio"])
    assert abs(cost.effective_macs / cost.macs - 0.7) <= 0.01
