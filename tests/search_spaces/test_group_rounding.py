"""A group may round its kept counts its own way (``round_to`` in its entry): honoured everywhere the space
rounds, written back by ``to_dict``/``save_space``, and refused with one clear line when it cannot work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoprune.engine.rounding import Rounding, round_count
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, BudgetError
from autoprune.search_spaces import GroupSpace, SearchSpace, load_space, save_space, with_rounding

OWN = {"layer3.0.conv1": 16, "layer2.0.conv1": 8, "layer3.0.shortcut.0": 32}


def _spec(**groups: Any) -> dict[str, Any]:
    return {"round_to": 4, "target": 0.8, "groups": {"conv1": {}, "layer1.0.conv1": {}, **groups}}


def _multiple(count: int, step: int, channels: int) -> bool:
    return count % step == 0 or count == channels


def test_each_group_keeps_multiples_of_its_own_round_to(resnet20: ModelStructure) -> None:
    space = load_space(_spec(**{name: {"round_to": r} for name, r in OWN.items()}), resnet20)
    assert space.rounding == Rounding(4, OWN)
    for g in space.groups:
        step = OWN.get(g.name, 4)
        assert all(_multiple(c, step, g.channels) for c in g.choices), (g.name, g.choices)
    assert space.group("layer3.0.conv1").choices == (16, 32, 48, 64)  # the default grid 0.25..1 of 64, by 16
    assert space.group("layer1.0.conv1").choices == (4, 8, 12, 16)  # the space's round_to 4
    rng = np.random.default_rng(0)
    candidates = [space.sample(rng) for _ in range(30)] + [space.uniform(r) for r in (0.3, 0.6, 1.0)]
    candidates += [space.project(rng.uniform(0, 1, len(space.groups))) for _ in range(30)]
    for counts in candidates:
        assert space.feasible(counts)
        for name, count in counts.items():
            assert _multiple(count, OWN.get(name, 4), space.group(name).channels), (name, count)


def test_exact_counts_must_respect_the_groups_own_round_to(resnet20: ModelStructure) -> None:
    space = load_space(_spec(**{"layer3.0.conv1": {"round_to": 16, "counts": [32, 48, 64]}}), resnet20)
    assert space.group("layer3.0.conv1").choices == (32, 48, 64)
    with pytest.raises(AutoPruneError, match=r"counts \[40\] are not allowed; use multiples of 16 \(round_to=16\)"):
        load_space(_spec(**{"layer3.0.conv1": {"round_to": 16, "counts": [32, 40, 64]}}), resnet20)


@pytest.mark.parametrize(("value", "expected"), [
    (0, ["group 'conv1'", "round_to=0", "integer >= 1"]),
    (4.5, ["group 'conv1'", "round_to must be an integer >= 1", "4.5"]),
    ("8", ["group 'conv1'", "round_to must be an integer", "'8'"]),
    (True, ["group 'conv1'", "round_to must be an integer", "True"]),
    (32, ["group 'conv1'", "round_to=32 exceeds its 16 channels", "at most 16", "'exclude'"]),
])  # fmt: skip
def test_bad_group_round_to_is_refused_in_one_line(resnet20: ModelStructure, value: Any, expected: list[str]) -> None:
    with pytest.raises(AutoPruneError) as info:
        load_space(_spec(conv1={"round_to": value}), resnet20)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message


def test_space_built_in_code_checks_choices_against_the_groups_round_to(resnet20: ModelStructure) -> None:
    groups = (GroupSpace("layer3.0.conv1", 64, (24, 32, 64), round_to=16),)
    with pytest.raises(AutoPruneError, match=r"counts \[24\] are not multiples of 16 \(the group's round_to=16"):
        SearchSpace(groups, "macs", 1.0, 4, resnet20)
    ok = SearchSpace((GroupSpace("layer3.0.conv1", 64, (16, 32, 64), round_to=16),), "macs", 1.0, 4, resnet20)
    assert ok.rounding.of("layer3.0.conv1") == 16 and ok.rounding.of("conv1") == 4


def test_to_dict_and_save_space_round_trip(resnet20: ModelStructure, tmp_path: Path) -> None:
    space = load_space(_spec(**{name: {"round_to": r} for name, r in OWN.items()}), resnet20)
    data = space.to_dict()
    assert data["groups"]["layer3.0.conv1"]["round_to"] == 16
    assert "round_to" not in data["groups"]["conv1"]  # a group without its own rounding writes none
    path = save_space(space, tmp_path / "deep" / "space.yaml", model="resnet20", comment="made here\nby a test")
    assert path.read_text().startswith("# made here\n# by a test\nmodel: resnet20\n")
    assert load_space(path, resnet20, model="resnet20") == space


def test_with_rounding_rerounds_the_choices_and_rechecks_the_budget(resnet20: ModelStructure) -> None:
    base = load_space("resnet20", resnet20)  # round_to 4
    rounded = with_rounding(base, {"layer3.0.conv1": 16, "layer2.0.conv1": 8})
    assert rounded.group("layer3.0.conv1").choices == (16, 32, 48, 64)
    assert rounded.group("layer2.0.conv1").choices == (8, 16, 24, 32)
    assert rounded.group("layer1.0.conv1") == base.group("layer1.0.conv1")
    assert rounded.target == base.target and rounded.rounding.of("layer3.0.conv1") == 16
    with pytest.raises(AutoPruneError, match="unknown group 'layer9'"):
        with_rounding(base, {"layer9": 8})
    with pytest.raises(AutoPruneError, match="round_to=128 exceeds its 64 channels"):
        with_rounding(base, {"layer3.0.conv1": 128})
    tight = load_space("resnet20", resnet20, target=0.2)
    with pytest.raises(BudgetError, match="cannot be met"):
        with_rounding(tight, {g.name: g.channels // 2 for g in tight.groups})


def test_round_count_takes_a_rounding_per_group(resnet20: ModelStructure) -> None:
    rounding = Rounding(4, {"layer3.0.conv1": 16})
    assert round_count(resnet20.group("layer3.0.conv1"), 37, rounding) == 32
    assert round_count(resnet20.group("layer3.1.conv1"), 37, rounding) == 36
    with pytest.raises(ValueError, match="must be >= 1"):
        Rounding(4, {"conv1": 0})
