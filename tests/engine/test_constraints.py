"""Divisibility and branch constraints of groups (issue 21): GroupNorm, concatenations, exact MACs."""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from autoprune.engine.plan import PrunePlan, apply_masks, apply_plan, channel_masks
from autoprune.engine.pruner import PruneConfig
from autoprune.engine.selection import select_kept
from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
from autoprune.metrics import count_macs, count_params
from autoprune.pipelines.prune import prune
from autoprune.search_spaces import auto_space
from autoprune.search_spaces.spec import channel_space

SHAPE = (1, 3, 16, 16)


class GroupNormNet(nn.Module):
    """conv(3, 16) -> GroupNorm(4, 16) -> ReLU -> conv -> BN -> pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class SplitGroupNormNet(nn.Module):
    """A GroupNorm after a concatenation: its channels belong to two groups."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 1)
        self.norm = nn.GroupNorm(4, 16)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class ConcatNet(nn.Module):
    """Two unequal branches (8 and 24 channels) concatenated, then a BN and a depthwise conv over the
    concatenation: one group spans both branches."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 24, 1)
        self.bn = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.head = nn.Conv2d(32, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        x = torch.relu(self.head(self.dw(x)))
        return self.fc(x.mean(dim=(2, 3)))


class DepthwiseBranchNet(nn.Module):
    """A depthwise conv in one branch of a concatenation, a 1x1 conv in the other, a depthwise conv after."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw1 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.bn = nn.BatchNorm2d(24)
        self.dw2 = nn.Conv2d(24, 24, 3, stride=2, padding=1, groups=24)
        self.expand = nn.Conv2d(24, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        x = torch.relu(self.bn(torch.cat([self.dw1(s), self.pw(s)], 1)))
        x = torch.relu(self.expand(self.dw2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _plan(structure: ModelStructure, counts: dict[str, int], scores: dict[str, torch.Tensor]) -> PrunePlan:
    return PrunePlan(
        input_shape=structure.input_shape,
        channels={g.name: g.channels for g in structure.groups},
        kept={g.name: select_kept(g, scores[g.name], counts[g.name]) for g in structure.groups},
    )


# ----------------------------------------------------------------------------------------------- GroupNorm
@pytest.mark.parametrize("config", [
    PruneConfig(keep_ratios={"stem.0": 0.55}, round_to=1),
    PruneConfig(target_macs=0.5, round_to=1),
    PruneConfig(target_macs=0.3, round_to=1, scope="global"),
])
def test_groupnorm_counts_are_multiples_of_its_groups(config: PruneConfig) -> None:
    model = GroupNormNet().eval()
    pruned, plan = prune(model, SHAPE, config)
    kept = plan.kept["stem.0"]
    assert len(kept) % 4 == 0 and len(kept) < 16
    assert [sum(1 for i in kept if i // 4 == block) for block in range(4)] == [len(kept) // 4] * 4
    assert pruned.stem[1].num_channels == len(kept)
    assert pruned(torch.randn(2, *SHAPE[1:])).shape == (2, 10)
    assert count_macs(pruned, SHAPE) == plan.meta["predicted_macs"]


def test_groupnorm_search_space_allows_only_multiples_of_its_groups() -> None:
    model = GroupNormNet().eval()
    structure = ModelStructure(model, SHAPE)
    assert structure.group("stem.0").channel_groups == 4
    space = auto_space(structure, target=0.5, round_to=1, min_ratio=0.1, step=0.05)
    assert space.choices["stem.0"] == (4, 8, 12, 16)
    scores = {g.name: torch.rand(g.channels) for g in structure.groups}
    for count in space.choices["stem.0"]:
        counts = {**space.largest(), "stem.0": count}
        pruned = apply_plan(model, _plan(structure, counts, scores))
        assert pruned(torch.randn(1, *SHAPE[1:])).shape == (1, 10)
        assert count_macs(pruned, SHAPE) == structure.predict_macs(counts)
    assert min(channel_space(structure, target=0.5, min_keep_ratio=0.01).choices["stem.0"]) == 4


def test_groupnorm_split_over_groups_is_left_unpruned_with_a_warning() -> None:
    model = SplitGroupNormNet().eval()
    with pytest.warns(UnsupportedLayerWarning, match="GroupNorm 'norm'"):
        structure = ModelStructure(model, SHAPE)
    assert structure.group_names == ["conv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedLayerWarning)
        pruned, plan = prune(model, SHAPE, PruneConfig(target_macs=0.7, round_to=1))
    assert pruned(torch.randn(1, *SHAPE[1:])).shape == (1, 10)
    assert count_macs(pruned, SHAPE) == plan.meta["predicted_macs"]


# ---------------------------------------------------------------------------------------- concatenations
def test_every_branch_of_a_concatenation_keeps_a_channel() -> None:
    model = ConcatNet().eval()
    structure = ModelStructure(model, SHAPE)
    group = structure.group("dw")
    assert group.channels == 32 and len(group.segments) == 2 and group.min_channels == 2
    favour_b = torch.cat([torch.zeros(8), torch.ones(24)])  # a plain top-k would keep branch b only
    for keep in (2, 3, 8, 16, 31):
        kept = select_kept(group, favour_b, keep)
        assert len(kept) == keep and any(i < 8 for i in kept) and any(i >= 8 for i in kept)
        plan = PrunePlan(SHAPE, channels={g.name: g.channels for g in structure.groups}, kept={"dw": kept})
        pruned = apply_plan(model, plan)
        assert pruned.a.out_channels >= 1 and pruned.b.out_channels >= 1
        assert pruned(torch.randn(1, *SHAPE[1:])).shape == (1, 10)
    smaller = select_kept(group, favour_b, 8)
    assert set(smaller) <= set(select_kept(group, favour_b, 9))  # nested, as the supernet needs
    with pytest.raises(ValueError, match="keep=1 is not allowed"):
        select_kept(group, favour_b, 1)


def test_concat_minimum_counts_leave_every_branch_a_channel() -> None:
    structure = ModelStructure(ConcatNet().eval(), SHAPE)
    assert structure.keep_counts({"dw": 0.01})["dw"] == 2
    assert min(auto_space(structure, target=0.9, min_ratio=0.01, step=0.01).choices["dw"]) == 2
    assert min(channel_space(structure, target=0.9, min_keep_ratio=0.01).choices["dw"]) == 2
    pruned, plan = prune(ConcatNet().eval(), SHAPE, PruneConfig(target_macs=0.05, round_to=1, min_keep_ratio=0.01))
    assert len(plan.kept["dw"]) >= 2
    assert pruned(torch.randn(1, *SHAPE[1:])).shape == (1, 10)


@pytest.mark.parametrize("net", [ConcatNet, DepthwiseBranchNet, GroupNormNet])
def test_predicted_macs_and_params_equal_counted_for_any_kept_channels(net: Callable[[], nn.Module]) -> None:
    model = net().eval()
    structure = ModelStructure(model, SHAPE)
    rng = random.Random(0)
    gen = torch.Generator().manual_seed(0)
    for trial in range(8):
        counts = structure.keep_counts({g.name: rng.uniform(0.05, 1.0) for g in structure.groups})
        scores = {g.name: torch.rand(g.channels, generator=gen) for g in structure.groups}
        pruned = apply_plan(model, _plan(structure, counts, scores))
        assert count_macs(pruned, SHAPE) == structure.predict_macs(counts), (trial, counts)
        assert count_params(pruned)[0] == structure.predict_params(counts), (trial, counts)


@pytest.mark.parametrize("net", [ConcatNet, DepthwiseBranchNet])
def test_masked_equals_pruned_across_a_concatenation(
    net: Callable[[], nn.Module], randomize_bn: Callable[[nn.Module], nn.Module]
) -> None:
    torch.manual_seed(0)
    model = randomize_bn(net()).eval()
    structure = ModelStructure(model, SHAPE)
    counts = structure.keep_counts({g.name: 0.4 for g in structure.groups})
    plan = _plan(structure, counts, {g.name: torch.rand(g.channels) for g in structure.groups})
    pruned = apply_plan(model, plan)
    masked = copy.deepcopy(model)
    apply_masks(masked, channel_masks(ModelStructure(masked, SHAPE), plan))
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), atol=1e-5, rtol=1e-4)


# -------------------------------------------------------------------------------- supernet under GroupNorm
def test_supernet_warns_that_scores_are_approximate_under_groupnorm() -> None:
    from autoprune.supernet import ApproximateGatesWarning, Supernet

    with pytest.warns(ApproximateGatesWarning, match="GroupNorm 'stem.1'"):
        net = Supernet(GroupNormNet().eval(), SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ApproximateGatesWarning)
        Supernet(ConcatNet().eval(), SHAPE)  # BatchNorm only: exact, no warning
    # the gated GroupNorm's masked channels are zero, as in the extracted model (which lacks them)
    counts = {"stem.0": 8}
    net.activate(counts)
    seen = {}
    hook = net.model.stem[1].register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    with torch.no_grad():
        net.model(torch.randn(2, *SHAPE[1:]))
    hook.remove()
    dropped = sorted(set(range(16)) - set(net.kept_indices("stem.0", 8)))
    assert bool((seen["out"][:, dropped] == 0).all())
