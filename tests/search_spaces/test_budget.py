"""The budget module: projection moves requests up and down onto the budget, over random spaces and requests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoprune.engine.rounding import group_step
from autoprune.engine.structure import ModelStructure
from autoprune.errors import BudgetError
from autoprune.search_spaces import GroupSpace, SearchSpace
from autoprune.search_spaces.spec import channel_space


@st.composite
def spaces_and_requests(draw: st.DrawFn, structure: ModelStructure) -> tuple[SearchSpace, list[float]]:
    """A random space over a random subset of the model's groups, a reachable target, and a request."""
    round_to = draw(st.sampled_from([1, 2, 4, 8]))
    names = draw(st.lists(st.sampled_from(structure.group_names), min_size=1, unique=True))
    groups = []
    for name in (n for n in structure.group_names if n in names):
        g = structure.group(name)
        step = group_step(g, round_to)
        allowed = sorted({*range(step, g.channels + 1, step), g.channels})
        chosen = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=6, unique=True))
        groups.append(GroupSpace(name, g.channels, tuple(sorted(chosen))))
    metric = draw(st.sampled_from(["macs", "params"]))
    probe = SearchSpace(tuple(groups), metric, 1.0, round_to, structure)  # type: ignore[arg-type]
    lowest = probe.min_cost()
    target = lowest + draw(st.floats(0.0, 1.0)) * (1.0 - lowest)
    space = SearchSpace(tuple(groups), metric, max(target, 1e-6), round_to, structure)  # type: ignore[arg-type]
    request = draw(st.lists(st.floats(0.0, 1.0), min_size=len(groups), max_size=len(groups)))
    return space, request


def _one_step_up_breaks_the_budget(space: SearchSpace, counts: dict[str, int]) -> bool:
    for g in space.groups:
        i = g.choices.index(counts[g.name])
        if i + 1 < len(g.choices) and space.cost({**counts, g.name: g.choices[i + 1]}) <= space.target + 1e-9:
            return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_projection_lands_within_one_step_of_the_target(resnet20: ModelStructure, data: st.DataObject) -> None:
    space, request = data.draw(spaces_and_requests(resnet20))
    counts = space.project(request)
    assert all(counts[g.name] in g.choices for g in space.groups)
    assert space.cost(counts) <= space.target + 1e-9  # never over the budget
    # within one rounding step: no single group can take its next choice and still meet the budget
    assert _one_step_up_breaks_the_budget(space, counts)
    assert space.saturated(counts)
    nearest = space.counts(np.clip(request, [g.ratio(g.min_count) for g in space.groups], 1.0))
    if space.cost(nearest) <= space.target + 1e-12:  # under the budget: moved up, never down
        assert all(counts[n] >= nearest[n] for n in space.names)
        assert space.project(request, fill=False) == nearest  # and kept as it is when asked
    else:  # over the budget: moved down to it
        assert space.cost(counts) < space.cost(nearest)
    assert space.project(request) == counts  # deterministic


def test_projection_keeps_the_shape_of_the_request(resnet20: ModelStructure) -> None:
    from autoprune.search_spaces import auto_space

    space = auto_space(resnet20, target=0.6, min_ratio=0.125, step=0.0625, round_to=1)
    small = {n: (0.2 if n.startswith("layer3") else 0.5) for n in space.names}
    counts = space.project(small)
    ratios = space.ratios(counts)
    # scaled up together: the layer3 groups stay the smallest relative to the others
    assert max(ratios[n] for n in space.names if n.startswith("layer3")) < min(
        ratios[n] for n in space.names if not n.startswith("layer3")
    )
    assert space.cost(counts) > space.cost(space.counts(small)) and space.saturated(counts)


def test_budget_use_reports_cost_over_target(resnet20: ModelStructure) -> None:
    space = channel_space(resnet20, target=0.5, round_to=4)
    use = space.budget_use(space.uniform(1.0))
    assert use["saturated"] and 0.95 <= use["used"] <= 1.0 + 1e-9
    assert math.isclose(use["cost"], use["used"] * 0.5)
    low = space.budget_use(space.smallest())
    assert not low["saturated"] and low["used"] < 0.5


def test_channel_space_allows_every_width_and_refuses_unreachable_targets(resnet20: ModelStructure) -> None:
    space = channel_space(resnet20, target=0.5, round_to=8, min_keep_ratio=0.05)
    g = space.group("layer3.0.conv1")
    assert g.choices == (8, 16, 24, 32, 40, 48, 56, 64)
    with pytest.raises(BudgetError, match="cannot be met"):
        channel_space(resnet20, target=0.01, min_keep_ratio=0.5)
