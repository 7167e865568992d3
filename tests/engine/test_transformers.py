"""Vision transformers (issue 21): only the groups that prune correctly are pruned, the rest are named.

Small configurations of torchvision's own classes (ViT, Swin v1/v2, MaxViT), so the patterns are the real
ones and the tests take seconds; the full-size models run in the slow sweep
(``tests/models/test_torchvision_sweep.py``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torchvision.models.maxvit import MaxVit
from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2
from torchvision.models.vision_transformer import VisionTransformer

from autoprune.engine.plan import apply_masks, channel_masks
from autoprune.engine.pruner import PruneConfig
from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
from autoprune.metrics import count_macs
from autoprune.pipelines.prune import prune

SHAPE = (1, 3, 32, 32)


def _vit() -> nn.Module:
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=10)
    nn.init.normal_(model.heads.head.weight, std=0.5)  # zero-initialised: outputs would be trivially equal
    return model


def _swin() -> nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10)


def _swin_v2() -> nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10, block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)


def _maxvit() -> nn.Module:
    return MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[16, 32], block_layers=[1, 1],
                  head_dim=4, stochastic_depth_prob=0.0, num_classes=10)


def _structure(model: nn.Module) -> tuple[ModelStructure, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsupportedLayerWarning)
        structure = ModelStructure(model, SHAPE)
    return structure, [str(w.message) for w in caught if issubclass(w.category, UnsupportedLayerWarning)]


def _check_pruned(model: nn.Module, structure: ModelStructure) -> nn.Module:
    """Prune every group to half: the model runs, MACs are as predicted, masked and pruned agree."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedLayerWarning)
        pruned, plan = prune(model, SHAPE, PruneConfig(keep_ratios={g.name: 0.5 for g in structure.groups},
                                                        round_to=1))
    masked = copy.deepcopy(model)
    apply_masks(masked, channel_masks(structure, plan))
    x = torch.randn(3, *SHAPE[1:])
    with torch.no_grad():
        out = pruned.eval()(x)
        assert out.shape == (3, 10)
        assert out.abs().max() > 0
        torch.testing.assert_close(out, masked.eval()(x), atol=1e-5, rtol=1e-4)
    counted = count_macs(pruned, SHAPE)
    assert counted == plan.meta["predicted_macs"] < structure.dense_macs
    return pruned


def test_vit_prunes_its_mlps_and_leaves_the_attention_embedding_with_a_warning() -> None:
    torch.manual_seed(0)
    model = _vit().eval()
    structure, messages = _structure(model)
    assert structure.group_names == ["encoder.layers.encoder_layer_1.mlp.0", "encoder.layers.encoder_layer_0.mlp.0"]
    assert len(messages) == 1
    assert "nn.MultiheadAttention 'encoder.layers.encoder_layer_1.self_attention'" in messages[0]
    assert "class_token" in messages[0] and "encoder.pos_embedding" in messages[0]
    pruned = _check_pruned(model, structure)
    assert pruned.hidden_dim == 16 and pruned.conv_proj.out_channels == 16  # type: ignore[union-attr]
    assert pruned.encoder.layers[0].mlp[0].out_features == 16  # type: ignore[index,union-attr]


def test_vit_at_a_budget_prunes_to_it() -> None:
    torch.manual_seed(0)
    model = _vit().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedLayerWarning)
        structure = ModelStructure(model, SHAPE)
        target = 1 - 0.5 * sum(g.macs for g in structure.groups) / structure.dense_macs  # half of the MLPs
        pruned, plan = prune(model, SHAPE, PruneConfig(target_macs=target, round_to=1))
    assert count_macs(pruned, SHAPE) == plan.meta["predicted_macs"] <= target * structure.dense_macs
    assert pruned(torch.zeros(SHAPE)).shape == (1, 10)


@pytest.mark.parametrize("build", [_swin, _swin_v2], ids=["swin", "swin_v2"])
def test_swin_prunes_its_mlps_quickly_and_names_the_window_attention(build: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    model = build().eval()
    structure, messages = _structure(model)
    assert structure.group_names == ["features.3.1.mlp.0", "features.3.0.mlp.0", "features.1.1.mlp.0",
                                     "features.1.0.mlp.0"]
    assert messages and all("left unpruned" in m for m in messages)
    assert any("maps as a flatten" in m for m in messages)  # the walk that grew without bound is stopped
    _check_pruned(model, structure)


def test_maxvit_leaves_out_groups_whose_pruning_breaks_its_reshapes() -> None:
    torch.manual_seed(0)
    model = _maxvit().eval()
    structure, messages = _structure(model)
    broken = [m for m in messages if "breaks the model's forward pass" in m]
    assert len(broken) == 1 and "grid_attention.mlp_layer.3" in broken[0]
    assert "blocks.0.layers.0.layers.MBconv.layers.conv_b.0" in structure.group_names
    assert not any("mlp_layer.3" in name or "to_qkv" in name for name in structure.group_names)
    _check_pruned(model, structure)
