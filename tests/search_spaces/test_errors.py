"""Every malformed spec or input raises an AutoPruneError naming the bad value and the fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, BudgetError
from autoprune.search_spaces import GroupSpace, SearchSpace, auto_space, load_space

BAD_SPECS: list[tuple[str, Any, list[str]]] = [
    ("unknown top-level key", {"targte": 0.5}, ["'targte'", "Did you mean 'target'", "Valid keys: model, metric"]),
    ("unknown group", {"groups": {"layer1.0.conv": {}}}, ["'layer1.0.conv'", "Did you mean 'layer1.0.conv1'",
                                                         "This model's groups are: "]),
    ("unknown excluded group", {"exclude": ["layer9.conv1"]}, ["'layer9.conv1'", "groups are:"]),
    ("non-string group name", {"groups": {3: {}}}, ["unknown group 3"]),
    ("min_ratio 0", {"defaults": {"min_ratio": 0}}, ["defaults: min_ratio=0", "(0, 1]"]),
    ("min_ratio negative", {"groups": {"conv1": {"min_ratio": -0.2}}}, ["'conv1'", "min_ratio=-0.2", "(0, 1]"]),
    ("max_ratio above 1", {"defaults": {"max_ratio": 1.5}}, ["max_ratio=1.5", "(0, 1]"]),
    ("choice above 1", {"groups": {"conv1": {"choices": [0.5, 1.2]}}}, ["choice=1.2", "(0, 1]"]),
    ("choice 0", {"groups": {"conv1": {"choices": [0]}}}, ["choice=0", "(0, 1]"]),
    ("empty choices", {"groups": {"conv1": {"choices": []}}}, ["non-empty list"]),
    ("choices not a list", {"groups": {"conv1": {"choices": "0.5"}}}, ["choices must be a non-empty list", "'0.5'"]),
    ("min above max", {"defaults": {"min_ratio": 0.8, "max_ratio": 0.5}}, ["min_ratio=0.8", "max_ratio=0.5",
                                                                            "lower min_ratio or raise max_ratio"]),
    ("group max below default min", {"groups": {"conv1": {"max_ratio": 0.2}}}, ["'conv1'", "min_ratio=0.25"]),
    ("step 0", {"defaults": {"step": 0}}, ["step=0", "> 0"]),
    ("step negative", {"groups": {"conv1": {"step": -0.1}}}, ["step=-0.1", "> 0"]),
    ("NaN ratio", {"defaults": {"min_ratio": math.nan}}, ["min_ratio=nan", "finite"]),
    ("infinite step", {"defaults": {"step": math.inf}}, ["step=inf", "finite"]),
    ("huge integer step", {"defaults": {"step": 10**400}}, ["step=", "too large"]),
    ("string number", {"target": "0.5"}, ["target must be a number", "'0.5'", "without quotes"]),
    ("YAML exponent text", {"defaults": {"min_ratio": "1e-1"}}, ["min_ratio must be a number", "write 0.001"]),
    ("boolean number", {"defaults": {"step": True}}, ["step must be a number", "True"]),
    ("list where mapping", {"groups": ["conv1"]}, ["'groups' must be a mapping", "list"]),
    ("defaults not a mapping", {"defaults": [0.25, 1.0]}, ["'defaults' must be a mapping"]),
    ("group entry not a mapping", {"groups": {"conv1": 0.5}}, ["'groups.conv1' must be a mapping", "min_ratio: 0.5"]),
    ("unknown group key", {"groups": {"conv1": {"min": 0.5}}}, ["unknown key 'min' in group 'conv1'",
                                                                 "Valid keys: min_ratio"]),
    ("unknown defaults key", {"defaults": {"choices": [0.5]}}, ["unknown key 'choices' in defaults"]),
    ("exclude not a list", {"exclude": "conv1"}, ["'exclude' must be a list of group names"]),
    ("round_to float", {"round_to": 4.5}, ["round_to must be an integer >= 1", "4.5"]),
    ("round_to zero", {"round_to": 0}, ["round_to=0 must be an integer >= 1"]),
    ("model not a string", {"model": 20}, ["'model' must be a model name"]),
    ("metric unknown", {"metric": "flops"}, ["metric 'flops' is not supported", "macs, params"]),
    ("metric latency without a table", {"metric": "latency"}, ["metric 'latency' needs a latency table",
                                                              "build_latency_table(structure, choices)"]),
    ("metric not a string", {"metric": ["macs"]}, ["metric must be one of macs, params"]),
    ("excluded and configured", {"groups": {"conv1": {}}, "exclude": ["conv1"]}, ["'conv1' is both configured",
                                                                                "remove it from one"]),
    ("grid and choices at once", {"groups": {"conv1": {"choices": [0.5], "min_ratio": 0.5}}}, ["either choices"]),
    ("counts breaking rounding", {"round_to": 4, "groups": {"conv1": {"counts": [6, 16]}}}, ["counts [6]",
                                                                                          "multiples of 4"]),
    ("channels of another model", {"groups": {"conv1": {"channels": 32, "counts": [16]}}}, ["16 channels",
                                                                                        "different model"]),
    ("source of the wrong type", [1, 2], ["must be a YAML path, a bundled name or a mapping", "[1, 2]"]),
]

BUDGETS: list[tuple[str, Any]] = [("target 0", 0), ("target above 1", 1.5), ("target NaN", math.nan)]


@pytest.mark.parametrize(("case", "spec", "fragments"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_malformed_spec_raises_a_helpful_error(
    resnet20: ModelStructure, case: str, spec: Any, fragments: list[str]
) -> None:
    with pytest.raises(AutoPruneError) as info:
        load_space(spec, resnet20)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (case, message)


@pytest.mark.parametrize(("case", "target"), BUDGETS, ids=[c[0] for c in BUDGETS])
def test_target_outside_the_unit_interval_is_a_budget_error(resnet20: ModelStructure, case: str, target: Any) -> None:
    with pytest.raises(BudgetError, match=r"target=.*\(0, 1\]"):
        load_space({"target": target}, resnet20)
    with pytest.raises(BudgetError, match=r"target=.*\(0, 1\]"):
        load_space("resnet20", resnet20, target=target)  # the override is checked too


def test_unreachable_target_names_the_smallest_fraction(resnet20: ModelStructure) -> None:
    lowest = auto_space(resnet20).min_cost()
    with pytest.raises(BudgetError) as info:
        auto_space(resnet20, target=0.05)
    message = str(info.value)
    assert f"target 0.05 cannot be met: the smallest sub-network keeps {lowest:.3f} of the dense MACs" in message
    assert "Raise the target" in message
    with pytest.raises(BudgetError, match="cannot be met"):
        load_space({"exclude": [n for n in resnet20.group_names if n != "conv1"]}, resnet20)


def test_everything_excluded(resnet20: ModelStructure) -> None:
    with pytest.raises(AutoPruneError, match="no groups to search"):
        load_space({"exclude": resnet20.group_names}, resnet20)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.yaml", "metric: macs\ngroups: {conv1: [unclosed\n", r"broken\.yaml: YAML syntax error"),
        ("empty.yaml", "# nothing\n", r"empty\.yaml is empty"),
        ("typo.yaml", "target: 0.5\nround_to: 4\nstep: 0.1\n", r"typo\.yaml: unknown top-level key 'step'"),
        ("listing.yaml", "- conv1\n- layer1.0.conv1\n", r"listing\.yaml: a search space must be a mapping with keys such as"),  # noqa: E501
        ("binary.yaml", b"\xff\xfe\x00bad", r"binary\.yaml"),
    ],
)
def test_file_errors_name_the_file(
    resnet20: ModelStructure, tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(AutoPruneError, match=message):
        load_space(path, resnet20)


def test_a_folder_is_not_a_space_file(resnet20: ModelStructure, tmp_path: Path) -> None:
    with pytest.raises(AutoPruneError, match="nor an existing YAML file"):
        load_space(tmp_path, resnet20)  # a folder


def test_unknown_bundled_name_suggests_the_closest(resnet20: ModelStructure) -> None:
    with pytest.raises(AutoPruneError, match=r"neither a bundled space.*Did you mean .*'resnet20'.*Bundled spaces: "):
        load_space("resnet2", resnet20)
    with pytest.raises(AutoPruneError, match="must be a YAML path"):
        load_space(cast(Any, 42), resnet20)


def test_auto_space_arguments_are_validated(resnet20: ModelStructure) -> None:
    with pytest.raises(AutoPruneError, match=r"min_ratio=1\.5"):
        auto_space(resnet20, min_ratio=1.5)
    with pytest.raises(AutoPruneError, match="step=0"):
        auto_space(resnet20, step=0)
    with pytest.raises(AutoPruneError, match=r"needs a latency table.*build_latency_table"):
        auto_space(resnet20, metric="latency")
    with pytest.raises(AutoPruneError, match="round_to"):
        auto_space(resnet20, round_to=0)


def test_space_inputs_are_validated(resnet20: ModelStructure) -> None:
    space = auto_space(resnet20, round_to=4)
    with pytest.raises(AutoPruneError, match=r"unknown group 'conv2'.*Did you mean 'conv1'.*searched groups are"):
        space.counts({"conv2": 0.5})
    for bad in (0.0, 1.5, math.nan):
        with pytest.raises(AutoPruneError, match="keep ratio"):
            space.counts({"conv1": bad})
    with pytest.raises(AutoPruneError, match=r"got 3 keep ratios for 12 searched groups"):
        space.counts([0.5, 0.5, 0.5])
    with pytest.raises(AutoPruneError, match="must be a number"):
        space.counts({"conv1": "half"})
    with pytest.raises(AutoPruneError, match="mapping of group names"):
        space.counts(cast(Any, "0.5"))
    with pytest.raises(AutoPruneError, match=r"must be in \[0, 1\]"):
        space.project(np.full(12, 1.5))
    # 0 is allowed in projection: clipped to the minimum (kept there without fill, filled to the budget with it)
    assert space.project(np.zeros(12), fill=False) == space.smallest()
    assert space.saturated(space.project(np.zeros(12)))
    with pytest.raises(AutoPruneError, match="exceed its 16 channels"):
        space.cost({"conv1": 17})
    with pytest.raises(AutoPruneError, match="integer"):
        space.ratios({"conv1": 8.5})
    with pytest.raises(AutoPruneError, match="keep_ratio"):
        space.uniform(0.0)


def test_direct_construction_is_validated(resnet20: ModelStructure) -> None:
    good = GroupSpace("conv1", 16, (8, 16))
    with pytest.raises(AutoPruneError, match="ascending"):
        GroupSpace("conv1", 16, (16, 8))
    with pytest.raises(AutoPruneError, match="at most channels=16"):
        GroupSpace("conv1", 16, (8, 32))
    with pytest.raises(AutoPruneError, match="must not be empty"):
        GroupSpace("conv1", 16, ())
    with pytest.raises(AutoPruneError, match="not multiples of 4"):
        SearchSpace((GroupSpace("conv1", 16, (6, 16)),), "macs", 0.9, 4, resnet20)
    with pytest.raises(AutoPruneError, match="different model"):
        SearchSpace((GroupSpace("conv1", 32, (16, 32)),), "macs", 0.9, 1, resnet20)
    with pytest.raises(AutoPruneError, match="appears twice"):
        SearchSpace((good, good), "macs", 0.9, 1, resnet20)
    with pytest.raises(AutoPruneError, match=r"needs a latency table.*latency_table="):
        SearchSpace((good,), "latency", 0.9, 1, resnet20)
    with pytest.raises(AutoPruneError, match="latency_table must be a LatencyTable"):
        SearchSpace((good,), "latency", 0.9, 1, resnet20, cast(Any, {"conv1": {}}))
