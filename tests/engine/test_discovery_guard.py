"""Group discovery is bounded and its failures are named (issue 21): time and graph-size limits, the
index mapping that grew without bound on Swin, ShuffleNetV2's channel shuffle, the probe, the safety net
of ``apply_plan`` and the trace-failure hint."""

from __future__ import annotations

import copy
import time
import warnings

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer

from autoprune.engine import discovery
from autoprune.engine.plan import apply_masks, apply_plan, channel_masks
from autoprune.engine.pruner import PruneConfig
from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
from autoprune.errors import AutoPruneError
from autoprune.metrics import count_macs
from autoprune.pipelines.prune import compute_plan, prune


def _swin() -> nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10).eval()


def _graph(model: nn.Module, shape: tuple[int, ...]) -> discovery.GuardedGraph:
    dg = discovery.GuardedGraph()
    dg.build_dependency(model, example_inputs=torch.zeros(shape), verbose=False)
    return dg


def test_the_swin_walk_is_stopped_at_the_index_cap() -> None:
    dg = _graph(_swin(), (1, 3, 32, 32))
    assert dg.index_cap == discovery.INDEX_FACTOR * 128  # the widest layer: the MLPs' 128 hidden features
    start = time.monotonic()
    groups, rejected = discovery.find_groups(dg, [], label="SwinTransformer")
    assert time.monotonic() - start < 10
    stopped = [r for r in rejected if "maps as a flatten" in r.reason]
    assert stopped and all(f"more than {dg.index_cap}" in r.reason for r in stopped)
    assert all(len(item.idxs) <= dg.index_cap for g in groups for item in g)


def test_the_original_graph_is_left_as_torch_pruning_builds_it() -> None:
    dg = tp.DependencyGraph().build_dependency(torchvision.models.resnet18(num_classes=10), torch.zeros(1, 3, 32, 32))
    assert len(list(dg.get_all_groups())) > 0
    assert not any(isinstance(m, discovery._CappedFlatten) for n in dg.module2node.values()
                   for d in n.dependencies for m in d.index_mapping)


def test_discovery_past_its_time_limit_is_refused_in_one_line() -> None:
    dg = _graph(torchvision.models.resnet18(num_classes=10).eval(), (1, 3, 32, 32))
    with pytest.raises(AutoPruneError, match=r"group discovery for ResNet exceeded 0 s \(0 groups found\)") as info:
        discovery.find_groups(dg, [], label="ResNet", time_s=0.0)
    assert "\n" not in str(info.value) and "ignored_layers" in str(info.value)


def test_a_graph_too_large_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "MAX_GRAPH_NODES", 10)
    with pytest.raises(AutoPruneError, match=r"group discovery for ResNet: its graph has \d+ nodes \(more than 10\)"):
        ModelStructure(torchvision.models.resnet18(num_classes=10).eval(), (1, 3, 32, 32))


def test_shufflenet_prunes_its_branches_and_names_the_channel_shuffle() -> None:
    torch.manual_seed(0)
    shape = (1, 3, 64, 64)
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsupportedLayerWarning)
        structure = ModelStructure(model, shape)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnsupportedLayerWarning)]
    assert messages and all("channel shuffle" in m for m in messages)
    assert "stage2.0.branch2.3" in structure.group_names and "conv5.0" in structure.group_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedLayerWarning)
        pruned, plan = prune(model, shape, PruneConfig(target_macs=0.5))
    assert count_macs(pruned, shape) == plan.meta["predicted_macs"] <= 0.5 * structure.dense_macs
    masked = copy.deepcopy(model)
    apply_masks(masked, channel_masks(structure, plan))
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(pruned.eval()(x), masked(x), atol=1e-5, rtol=1e-4)


class HeadReshapeNet(nn.Module):
    """A conv's 8 channels reshaped into 2 heads of 4 by fixed attributes (as attention blocks do): the graph
    couples the channels correctly, but pruning any of them breaks the reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.heads, self.head_dim = 2, 4
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.proj = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = self.conv(x).view(b, self.heads, self.head_dim, h * w).softmax(-1).reshape(b, 8, h * w).mean(-1)
        return self.fc(y + self.proj(torch.relu(self.stem(x))).mean((2, 3)))


def test_the_probe_leaves_out_a_group_whose_pruning_breaks_the_model() -> None:
    shape = (1, 3, 8, 8)
    with pytest.warns(UnsupportedLayerWarning, match=r"\('proj'\): pruning it breaks the model's forward pass"):
        structure = ModelStructure(HeadReshapeNet().eval(), shape)
    assert structure.group_names == ["stem"]
    with pytest.warns(UnsupportedLayerWarning):
        pruned, _ = prune(HeadReshapeNet().eval(), shape, PruneConfig(target_macs=0.6, round_to=1))
    assert pruned(torch.zeros(shape)).shape == (1, 10)


def test_apply_plan_never_returns_a_model_that_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import autoprune.engine.structure as structure_module

    monkeypatch.setattr(structure_module, "broken_groups", lambda *args, **kwargs: {})  # no probe: the net must hold
    shape = (1, 3, 8, 8)
    model = HeadReshapeNet().eval()
    plan = compute_plan(model, shape, PruneConfig(keep_ratios={"proj": 0.5}, round_to=1))
    with pytest.raises(AutoPruneError, match=r"removing channels of group 'proj' breaks HeadReshapeNet") as info:
        apply_plan(model, plan)
    message = str(info.value)
    assert "\n" not in message and "not supported" in message and "ignored_layers=['proj']" in message
    assert model.conv.out_channels == 8  # the base model is untouched
    with pytest.raises(AutoPruneError, match="pruning breaks HeadReshapeNet"):
        apply_plan(copy.deepcopy(model), plan, inplace=True)


class NeedsSize(nn.Module):
    """Runs on 8x8 inputs only (a flatten into a fixed linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_the_input_size_is_blamed_only_when_the_dense_model_fails_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AutoPruneError, match=r"NeedsSize does not run on input shape \(1, 3, 16, 16\)") as info:
        ModelStructure(NeedsSize(), (1, 3, 16, 16))
    assert "--image-size" in str(info.value) and "\n" not in str(info.value)

    def fail(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("integer division or modulo by zero")

    monkeypatch.setattr(discovery.GuardedGraph, "build_dependency", fail)
    with pytest.raises(AutoPruneError, match=r"could not trace NeedsSize .* the model runs") as info:
        ModelStructure(NeedsSize(), (1, 3, 8, 8))
    assert "--image-size" not in str(info.value) and "ZeroDivisionError" in str(info.value)
