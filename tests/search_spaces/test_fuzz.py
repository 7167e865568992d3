"""Property: any spec, however malformed, gives a valid SearchSpace or an AutoPruneError, nothing else."""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError
from autoprune.models import build_model
from autoprune.search_spaces import SearchSpace, load_space, space_from_dict
from autoprune.search_spaces.spec import GROUP_KEYS, TOP_KEYS

STRUCTURE = ModelStructure(build_model("resnet20", num_classes=10, in_channels=3), (1, 3, 32, 32))
GROUP_NAMES = STRUCTURE.group_names

words = st.text(max_size=10)
group_names = st.sampled_from(GROUP_NAMES) | words | st.integers(-3, 3)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 20)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(0.0, 1.0)
    | st.sampled_from([0.0, 1.0, -0.5, 1.5, math.nan, math.inf, 1e-300, 10**400])
    | words
    | st.sampled_from(["macs", "params", "latency", "0.5", "1e-3"])
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(words | st.sampled_from(GROUP_KEYS), inner, max_size=4),
    max_leaves=8,
)
ratio_like = st.floats(0.01, 1.0) | st.floats(0.01, 1.0) | scalars  # plausible twice as often as garbage
numbers_or_junk = st.lists(ratio_like, max_size=5) | st.lists(st.integers(-2, 70), max_size=5) | anything
group_entry = (
    st.none()
    | st.dictionaries(st.sampled_from(GROUP_KEYS) | words, ratio_like | numbers_or_junk, max_size=4)
    | anything
)
per_key: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["resnet20", "vgg_small"]) | anything,
    "metric": st.sampled_from(["macs", "params", "latency", "MACs", "flops"]) | anything,
    "target": ratio_like,
    "round_to": st.integers(-2, 70) | scalars,
    "defaults": st.dictionaries(st.sampled_from(GROUP_KEYS) | words, ratio_like, max_size=4) | anything,
    "groups": st.dictionaries(group_names, group_entry, max_size=5) | anything,
    "exclude": st.lists(group_names, max_size=4) | anything,
}


grid_entry = st.dictionaries(st.sampled_from(["min_ratio", "max_ratio", "step"]), st.floats(0.05, 1.0), max_size=3)
plausible: dict[str, st.SearchStrategy[Any]] = {
    "model": st.just("resnet20"),
    "metric": st.sampled_from(["macs", "params"]),
    "target": st.floats(0.3, 1.0),
    "round_to": st.integers(1, 16),
    "defaults": grid_entry,
    "groups": st.dictionaries(
        st.sampled_from(GROUP_NAMES),
        st.none() | grid_entry | st.fixed_dictionaries({"choices": st.lists(st.floats(0.05, 1.0), min_size=1)}),
        max_size=5,
    ),
    "exclude": st.lists(st.sampled_from(GROUP_NAMES), max_size=3),
}


@st.composite
def specs(draw: st.DrawFn) -> Any:
    """Random specs: wholly random ones, and plausible ones with at most one value or key gone wrong."""
    mode = draw(st.integers(0, 19))
    if mode == 0:
        return draw(anything)  # not even a mapping, most of the time
    if mode < 8:
        spec = {key: draw(strategy) for key, strategy in per_key.items() if draw(st.booleans())}
    else:
        spec = {key: draw(strategy) for key, strategy in plausible.items() if draw(st.booleans())}
        corrupt = draw(st.booleans())
        if spec and corrupt:
            spec[draw(st.sampled_from(sorted(spec)))] = draw(per_key[draw(st.sampled_from(sorted(per_key)))])
    if draw(st.integers(0, 9)) == 0:
        spec[draw(words | st.sampled_from(TOP_KEYS))] = draw(anything)
    return spec


def _check(space: SearchSpace) -> None:
    assert isinstance(space, SearchSpace) and space.names
    assert space.min_cost() <= space.target + 1e-9
    for g in space.groups:
        assert g.choices == tuple(sorted(set(g.choices))) and 1 <= g.min_count <= g.max_count <= g.channels
    for ratios in (np.ones(len(space.groups)), np.random.default_rng(0).random(len(space.groups))):
        assert space.feasible(space.project(ratios))
    assert space_from_dict(space.to_dict(), STRUCTURE) == space


@given(spec=specs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_spec_loads_or_raises_autoprune_error(spec: Any) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            space = load_space(spec, STRUCTURE, model="resnet20")
    except AutoPruneError as exc:
        assert str(exc)  # a message, not a bare exception
        event(f"refused: {type(exc).__name__}")
        return
    event("loaded")
    _check(space)


@given(text=st.text(max_size=80) | st.sampled_from(["{", "groups: [", "a: b: c", "- 1\n- 2", "target: .nan", "? x"]))
@settings(max_examples=40, deadline=None)
def test_any_yaml_text_loads_or_raises_autoprune_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "space.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            space = load_space(path, STRUCTURE)
        except AutoPruneError:
            return
    _check(space)
