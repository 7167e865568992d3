"""Budgets (fitted by the search space's budget module) -> kept counts -> plans, round trips, gradual composition."""

from __future__ import annotations

import pytest
import torch

from autoprune.engine.export import export_onnx, load_pruned, save_weights
from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.engine.pruner import PruneConfig, compose_plans
from autoprune.engine.structure import ModelStructure
from autoprune.errors import BudgetError, CheckpointError
from autoprune.metrics import count_macs, count_params
from autoprune.models import build_model
from autoprune.pipelines.prune import compute_plan, prune
from autoprune.search_spaces.budget import global_counts
from autoprune.search_spaces.spec import channel_space

SHAPE = (1, 1, 16, 16)


@pytest.fixture(scope="module")
def resnet20() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet20", num_classes=10, in_channels=1).eval()


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("round_to", [1, 4, 8])
@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_macs_target_is_met_within_two_percent(resnet20: torch.nn.Module, scope: str, round_to: int,
                                               target: float) -> None:
    pruned, plan = prune(resnet20, SHAPE, PruneConfig(target_macs=target, scope=scope, round_to=round_to))  # type: ignore[arg-type]
    ratio = count_macs(pruned, SHAPE) / count_macs(resnet20, SHAPE)
    assert ratio <= target + 1e-9
    assert ratio >= target - 0.02
    assert ratio == pytest.approx(plan.meta["predicted_macs"] / plan.meta["dense_macs"])
    for name, kept in plan.kept.items():
        n = len(kept)
        assert n == plan.channels[name] or n % round_to == 0, (name, n)


def test_params_target(resnet20: torch.nn.Module) -> None:
    pruned, _ = prune(resnet20, SHAPE, PruneConfig(target_macs=None, target_params=0.4, round_to=1))
    ratio = count_params(pruned)[0] / count_params(resnet20)[0]
    assert 0.38 <= ratio <= 0.4


def test_global_selection_never_empties_a_group(resnet20: torch.nn.Module) -> None:
    structure = ModelStructure(resnet20, SHAPE)
    # make one group look useless: a global ranking would remove it entirely without the floor
    scores = {g.name: torch.ones(g.channels) for g in structure.groups}
    weak = structure.groups[0].name
    scores[weak] = torch.full((structure.groups[0].channels,), 1e-6)
    space = channel_space(structure, target=0.5, round_to=1, min_keep_ratio=0.25)
    counts = global_counts(space, scores)
    assert counts[weak] >= 0.25 * structure.groups[0].channels
    assert space.feasible(counts) and space.saturated(counts)
    uniform = channel_space(structure, target=0.5, round_to=1).uniform(1.0)
    assert counts != uniform


def test_infeasible_budget_names_the_reachable_minimum(resnet20: torch.nn.Module) -> None:
    structure = ModelStructure(resnet20, SHAPE)
    with pytest.raises(BudgetError, match=r"cannot be met.*at least"):
        channel_space(structure, target=0.001, min_keep_ratio=0.5)
    with pytest.raises(BudgetError, match=r"target_macs=1.7 must be in \(0, 1\]"):
        PruneConfig(target_macs=1.7)


def test_plan_json_round_trip_rebuilds_the_same_model(resnet20: torch.nn.Module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pruned, plan = prune(resnet20, SHAPE, PruneConfig(target_macs=0.5, criterion="l2"))
    plan.save(tmp_path / "plan.json")
    save_weights(pruned, tmp_path / "model.safetensors")
    fresh = build_model("resnet20", num_classes=10, in_channels=1)  # different random init
    rebuilt = load_pruned(fresh, tmp_path / "plan.json", tmp_path / "model.safetensors").eval()
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in pruned.parameters()]
    x = torch.randn(3, *SHAPE[1:])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), pruned.eval()(x))
    loaded = PrunePlan.load(tmp_path / "plan.json")
    assert loaded.kept == plan.kept and loaded.channels == plan.channels


def test_corrupt_plan_and_weights_give_clear_errors(resnet20: torch.nn.Module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "plan.json"
    bad.write_text('{"plan_version": 1, "input_shape": [1, 1, 16')
    with pytest.raises(CheckpointError, match=r"plan\.json"):
        PrunePlan.load(bad)
    _, plan = prune(resnet20, SHAPE, PruneConfig(target_macs=0.5))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"w\.safetensors"):
        load_pruned(resnet20, plan, weights)


def test_plan_for_another_model_is_refused(resnet20: torch.nn.Module) -> None:
    from autoprune.errors import AutoPruneError

    _, plan = prune(resnet20, SHAPE, PruneConfig(target_macs=0.5))
    other = build_model("resnet32", num_classes=10, in_channels=1)
    with pytest.raises(AutoPruneError):
        apply_plan(other, plan)


def test_composed_gradual_plan_equals_sequential_pruning(resnet20: torch.nn.Module) -> None:
    first = compute_plan(resnet20, SHAPE, PruneConfig(target_macs=0.7, round_to=1))
    step1 = apply_plan(resnet20, first)
    second = compute_plan(step1, SHAPE, PruneConfig(target_macs=0.7, round_to=1, criterion="l2"))
    sequential = apply_plan(step1, second).eval()
    composed = apply_plan(resnet20, compose_plans(first, second)).eval()
    x = torch.randn(2, *SHAPE[1:])
    with torch.no_grad():
        torch.testing.assert_close(sequential(x), composed(x))


def test_onnx_export_matches_pytorch(resnet20: torch.nn.Module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pruned, _ = prune(resnet20, SHAPE, PruneConfig(target_macs=0.5))
    diff = export_onnx(pruned, SHAPE, tmp_path / "m.onnx")
    assert diff < 1e-4
    assert (tmp_path / "m.onnx").stat().st_size > 1000
