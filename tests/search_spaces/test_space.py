"""SearchSpace behaviour: choices and rounding, conversions, projection onto the budget, serialization."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.engine.rounding import group_step
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, BudgetError
from autoprune.metrics import count_macs, count_params
from autoprune.search_spaces import SearchSpace, auto_space, load_space, space_from_dict


@pytest.fixture(scope="module")
def space(resnet20: ModelStructure) -> SearchSpace:
    return auto_space(resnet20, target=0.5, round_to=4)


def test_auto_space_searches_every_group_with_the_grid(resnet20: ModelStructure, space: SearchSpace) -> None:
    assert space.names == resnet20.group_names
    assert space.metric == "macs" and space.target == 0.5 and space.round_to == 4
    by_name = {g.name: g for g in space.groups}
    assert by_name["conv1"].choices == (4, 8, 12, 16)  # 16 * (0.25, 0.375, ..., 1.0), rounded to 4
    assert by_name["layer3.0.conv1"].choices == (16, 24, 32, 40, 48, 56, 64)
    assert space.smallest() == {g.name: g.choices[0] for g in space.groups}
    assert space.largest() == {g.name: g.channels for g in space.groups}
    assert space.max_cost() == 1.0 and 0 < space.min_cost() < 0.5
    plain = auto_space(resnet20)
    assert by_name["conv1"].choices != plain.groups[plain.names.index("conv1")].choices  # round_to=1: 4, 6, ...


def test_counts_and_ratios_convert_both_ways(space: SearchSpace) -> None:
    counts = space.counts({"conv1": 0.5, "layer3.0.conv1": 0.3})
    assert counts["conv1"] == 8 and counts["layer3.0.conv1"] == 16  # 19.2 -> nearest choice 16
    assert counts["layer1.0.conv1"] == 16  # missing from the mapping: largest choice
    assert space.counts([0.5] * len(space.groups)) == space.counts(np.full(len(space.groups), 0.5))
    ratios = space.ratios(counts)
    assert ratios["conv1"] == 0.5 and ratios["layer3.0.conv1"] == 0.25
    assert space.counts(ratios) == counts
    g = space.groups[0]
    assert g.count_for(g.ratio(g.choices[2])) == g.choices[2]


def test_counts_respect_rounding_and_channel_blocks() -> None:
    class Grouped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
            self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32)
            self.conv3, self.fc = nn.Conv2d(32, 24, 1), nn.Linear(24, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            return self.fc(torch.relu(self.conv3(x)).mean((2, 3)))

    structure = ModelStructure(Grouped(), (1, 3, 8, 8))
    for round_to in (1, 3, 8):
        space = auto_space(structure, target=0.9, min_ratio=0.1, step=0.05, round_to=round_to)
        for g in space.groups:
            step = group_step(structure.group(g.name), round_to)
            assert all(c % step == 0 or c == g.channels for c in g.choices), (round_to, g)
        assert space.group("conv1").choices[0] % 4 == 0  # the grouped conv's 4 blocks


def test_discrete_choices_counts_and_exclude(resnet20: ModelStructure) -> None:
    spec = {
        "target": 0.9,
        "round_to": 4,
        "groups": {"conv1": {"choices": [0.5, 1.0, 0.49]}, "layer3.0.conv1": {"counts": [64, 16]},
                   "layer1.0.conv1": None, "layer2.0.conv1": {"min_ratio": 0.5, "max_ratio": 0.75, "step": 0.3}},
        "exclude": ["layer1.1.conv1"],
    }
    space = load_space(spec, resnet20)
    assert space.names == ["conv1", "layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"]  # model order
    assert space.group("conv1").choices == (8, 16)  # 0.49 and 0.5 both round to 8
    assert space.group("layer3.0.conv1").choices == (16, 64)
    assert space.group("layer2.0.conv1").choices == (16, 24)  # 0.5, 0.75 (max always included)
    everything_but = load_space({"exclude": ["conv1"]}, resnet20)
    assert "conv1" not in everything_but.names and len(everything_but.names) == len(resnet20.groups) - 1
    cost = everything_but.cost(everything_but.smallest())
    assert cost == everything_but.cost({**everything_but.smallest(), "conv1": 16})  # excluded and whole: fine
    with pytest.raises(AutoPruneError, match="not searched"):
        everything_but.cost({"conv1": 8})


def _draws(space: SearchSpace, n: int = 200) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    size = len(space.groups)
    draws = [rng.random(size) for _ in range(n // 2)]  # mostly within the budget already
    draws += [rng.uniform(0.6, 1.0, size) for _ in range(n // 2 - 10)]  # mostly over it
    draws += [np.ones(size), np.zeros(size)] + [np.where(rng.random(size) < 0.5, 0.0, 1.0) for _ in range(8)]
    return draws


def test_project_is_feasible_deterministic_and_fills_the_budget(space: SearchSpace) -> None:
    under = over = 0
    for ratios in _draws(space):
        counts = space.project(ratios)
        assert counts == space.project(list(ratios)) == space.project(dict(zip(space.names, ratios, strict=True)))
        assert list(counts) == space.names
        assert all(counts[g.name] in g.choices for g in space.groups)
        assert space.cost(counts) <= space.target + 1e-9 and space.feasible(counts)
        assert space.saturated(counts)  # filled: no group can take one more choice within the budget
        clipped = np.clip(ratios, [g.ratio(g.min_count) for g in space.groups], 1.0)
        nearest = space.counts(clipped)
        kept = space.project(ratios, fill=False)
        assert space.feasible(kept)
        if space.feasible(nearest):
            assert kept == nearest  # without fill, a request within the budget is unchanged
            assert all(counts[n] >= nearest[n] for n in space.names)  # with fill it only moves up
            under += 1
        else:
            over += 1
            assert all(kept[n] <= nearest[n] for n in space.names)  # never above the request
            for g in space.groups:  # the capped top-up left no group that could still grow within the budget
                c = kept[g.name]
                if c < nearest[g.name]:
                    grown = {**kept, g.name: g.choices[g.choices.index(c) + 1]}
                    assert space.cost(grown) > space.target
    assert under > 50 and over > 50  # both paths exercised


def test_projection_of_all_ones_lands_just_under_the_target(resnet20: ModelStructure, space: SearchSpace) -> None:
    for target in (0.3, 0.5, 0.75):
        s = dataclasses.replace(space, target=target)
        cost = s.cost(s.project([1.0] * len(s.groups)))
        assert target - 0.03 <= cost <= target, (target, cost)
    params = auto_space(resnet20, target=0.4, metric="params", round_to=4)
    counts = params.project(np.ones(len(params.groups)))
    assert 0.37 <= params.cost(counts) <= 0.4
    assert params.cost(counts) == resnet20.predict_params(counts) / resnet20.dense_params


def test_sample_uniform_largest_smallest(space: SearchSpace) -> None:
    first = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    seq_a = [space.sample(rng_a) for _ in range(20)]
    assert seq_a == [space.sample(rng_b) for _ in range(20)]
    assert first[0] == first[1] == first[2]
    assert all(space.feasible(c) for c in seq_a) and len({tuple(c.values()) for c in seq_a}) > 10
    assert space.uniform(0.25) == space.smallest()
    assert space.feasible(space.smallest()) and not space.feasible(space.largest())
    assert not space.feasible({"conv1": 5})  # not a choice


def test_to_dict_round_trips_through_json_and_yaml(resnet20: ModelStructure, space: SearchSpace) -> None:
    data = space.to_dict()
    assert space_from_dict(json.loads(json.dumps(data)), resnet20) == space
    assert load_space(yaml.safe_load(yaml.safe_dump(data)), resnet20) == space
    other = load_space("resnet20", resnet20)
    assert space_from_dict(other.to_dict(), resnet20) == other != space


def test_replace_revalidates_the_budget(space: SearchSpace) -> None:
    assert dataclasses.replace(space, target=0.2).target == 0.2
    with pytest.raises(BudgetError, match="cannot be met"):
        dataclasses.replace(space, target=0.01)


def _pruned_cost(structure: ModelStructure, counts: dict[str, int]) -> tuple[int, int]:
    plan = PrunePlan(
        input_shape=structure.input_shape,
        channels={g.name: g.channels for g in structure.groups},
        kept={name: list(range(k)) for name, k in counts.items()},
    )
    pruned = apply_plan(structure.model, plan)
    return count_macs(pruned, structure.input_shape), count_params(pruned)[0]


@pytest.mark.parametrize("name", ["resnet20", "vgg_small", "mobilenetv2"])
def test_cost_equals_the_macs_of_the_physically_pruned_model(
    name: str, structure_of: Callable[[str], ModelStructure]
) -> None:
    structure: ModelStructure = structure_of(name)
    space = load_space(name, structure)
    counts = space.project(np.random.default_rng(1).uniform(0.3, 1.0, len(space.groups)))
    macs, params = _pruned_cost(structure, counts)
    assert space.cost(counts) * structure.dense_macs == pytest.approx(macs, rel=0, abs=1e-6)
    params_space = dataclasses.replace(space, metric="params", target=1.0)
    assert params_space.cost(counts) * structure.dense_params == pytest.approx(params, rel=0, abs=1e-6)
    assert macs <= 0.5 * count_macs(structure.model, structure.input_shape)
