"""Groups, protected output layers, unsupported layers and the exact MACs/params model."""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from autoprune.engine.plan import PrunePlan, apply_masks, apply_plan, channel_masks
from autoprune.engine.selection import select_kept
from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
from autoprune.metrics import count_macs, count_params
from autoprune.models import build_model


def _random_plan(structure: ModelStructure, ratio: float = 0.5, seed: int = 0) -> PrunePlan:
    gen = torch.Generator().manual_seed(seed)
    counts = structure.keep_counts({g.name: ratio for g in structure.groups})
    kept = {g.name: select_kept(g, torch.rand(g.channels, generator=gen), counts[g.name]) for g in structure.groups}
    return PrunePlan(
        input_shape=structure.input_shape,
        channels={g.name: g.channels for g in structure.groups},
        kept=kept,
    )


class ConvHeadNet(nn.Module):
    """A classifier whose output layer is a 1x1 conv followed by global pooling (SqueezeNet style)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.head = nn.Conv2d(32, 10, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self.features(x))).flatten(1)


class Custom(nn.Module):
    """A layer the dependency graph knows nothing about (own parameter, channel mixing)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Parameter(torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,cd->ndhw", x, self.mix)


class CustomNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.custom = Custom(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(torch.relu(self.conv2(self.custom(torch.relu(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def test_conv_head_output_layer_is_never_pruned() -> None:
    model = ConvHeadNet().eval()
    structure = ModelStructure(model, (1, 3, 16, 16))
    assert structure.output_layers == ["head"]
    assert all("head" not in g.modules("out") for g in structure.groups)
    pruned = apply_plan(model, _random_plan(structure))
    assert pruned(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert pruned.head.out_channels == 10
    assert pruned.head.in_channels < 32


def test_unsupported_layer_is_skipped_with_a_warning_naming_it() -> None:
    model = CustomNet().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        structure = ModelStructure(model, (1, 3, 8, 8))
    messages = [str(w.message) for w in caught if issubclass(w.category, UnsupportedLayerWarning)]
    assert any("'custom'" in m for m in messages), messages
    names = structure.group_names
    assert "conv1" not in names  # its channels flow into the custom layer
    assert "conv2" in names  # unaffected group stays prunable
    pruned = apply_plan(model, _random_plan(structure))
    assert pruned(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    assert pruned.conv1.out_channels == 8


def test_resnet20_groups_couple_residual_stages() -> None:
    structure = ModelStructure(build_model("resnet20", num_classes=10, in_channels=3), (1, 3, 32, 32))
    by_name = {g.name: g for g in structure.groups}
    # every BasicBlock's first conv is its own group; the residual stream of each stage is one group
    assert sum(1 for g in structure.groups if g.channels in (16, 32, 64)) == len(structure.groups)
    big = max(structure.groups, key=lambda g: len(g.members))
    assert len(big.modules("out")) > 3  # the stage's convs + BNs tied by the additions
    assert structure.output_layers == ["fc"] or structure.output_layers[0].endswith("fc")
    assert by_name  # names are unique
    assert len(by_name) == len(structure.groups)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vgg_small", "torchvision:resnet18"])
def test_masked_model_equals_physically_pruned_model(name: str, randomize_bn: Callable[[nn.Module], nn.Module]) -> None:
    torch.manual_seed(0)
    model = randomize_bn(build_model(name, num_classes=10, in_channels=3))  # zeroed channels must matter
    shape = (1, 3, 32, 32)
    structure = ModelStructure(model, shape)
    plan = _random_plan(structure, 0.5, seed=1)
    pruned = apply_plan(model, plan).eval()
    masked = copy.deepcopy(model)
    apply_masks(masked, channel_masks(ModelStructure(masked, shape), plan))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(model(x), masked(x), atol=1e-3)  # the masks really changed something


TORCHVISION = [
    "resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf",
    "densenet121", "googlenet", "convnext_tiny", "resnext50_32x4d", "vgg11_bn", "squeezenet1_0",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models_prune_by_half_and_predictions_are_exact(name: str) -> None:
    model = build_model(f"torchvision:{name}", num_classes=10, in_channels=3).eval()
    shape = (1, 3, 64, 64)
    structure = ModelStructure(model, shape)
    assert structure.groups
    plan = _random_plan(structure, 0.5)
    counts = {n: len(k) for n, k in plan.kept.items()}
    pruned = apply_plan(model, plan)
    assert pruned(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    macs = count_macs(pruned, shape)
    assert macs < structure.dense_macs
    assert macs == structure.predict_macs(counts)
    assert count_params(pruned)[0] == structure.predict_params(counts)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vgg_small"])
def test_predicted_macs_match_counted_for_random_widths(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1)
    shape = (1, 1, 16, 16)
    structure = ModelStructure(model, shape)
    rng = random.Random(0)
    for trial in range(3):
        ratios = {g.name: rng.uniform(0.1, 1.0) for g in structure.groups}
        counts = structure.keep_counts(ratios)
        plan = PrunePlan(
            input_shape=shape,
            channels={g.name: g.channels for g in structure.groups},
            kept={g.name: list(range(counts[g.name])) for g in structure.groups},
        )
        pruned = apply_plan(model, plan)
        assert count_macs(pruned, shape) == structure.predict_macs(counts), trial
        assert count_params(pruned)[0] == structure.predict_params(counts), trial


def test_unknown_group_and_bad_ratio_errors() -> None:
    from autoprune.errors import AutoPruneError

    structure = ModelStructure(ConvHeadNet(), (1, 3, 8, 8))
    with pytest.raises(AutoPruneError, match="unknown group 'nope'"):
        structure.group("nope")
    with pytest.raises(AutoPruneError, match=r"must be in \(0, 1\]"):
        structure.keep_counts({structure.groups[0].name: 1.5})
