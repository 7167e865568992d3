"""The bundled YAML spaces load against their models and their budgets can be met."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from autoprune.engine.rounding import group_step
from autoprune.engine.structure import ModelStructure
from autoprune.models import model_names
from autoprune.search_spaces import SearchSpace, load_space, space_names

BUNDLED = ["resnet20", "resnet32", "resnet56", "vgg_small", "mobilenetv2"]


def test_every_bundled_space_is_listed_and_names_a_builtin_model() -> None:
    assert space_names() == sorted(BUNDLED)
    assert set(space_names()) <= set(model_names())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_space_loads_and_its_target_is_feasible(
    name: str, structure_of: Callable[[str], ModelStructure]
) -> None:
    structure: ModelStructure = structure_of(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file names this model: no mismatch warning
        space = load_space(name, structure, model=name)
    assert isinstance(space, SearchSpace)
    assert space.metric == "macs" and space.target == 0.5
    assert space.names and set(space.names) <= set(structure.group_names)
    assert space.min_cost() <= space.target < space.max_cost() == 1.0
    for g in space.groups:
        step = group_step(structure.group(g.name), space.round_to)
        assert all(c % step == 0 or c == g.channels for c in g.choices), g
        assert g.max_count == g.channels
    widest = space.uniform(1.0)
    assert space.feasible(widest)
    assert space.target - 0.03 <= space.cost(widest) <= space.target


def test_target_override_and_model_mismatch_warning(resnet20: ModelStructure) -> None:
    space = load_space("resnet20", resnet20, target=0.3)
    assert space.target == 0.3 and space.cost(space.uniform(1.0)) <= 0.3
    with pytest.warns(UserWarning, match="resnet32"):
        load_space("resnet20", resnet20, model="resnet32")


def test_a_bundled_file_loads_by_path_too(resnet20: ModelStructure) -> None:

    import autoprune.search_spaces as pkg

    path = Path(pkg.__file__).parent / "resnet20.yaml"
    assert load_space(path, resnet20) == load_space("resnet20", resnet20) == load_space(str(path), resnet20)
