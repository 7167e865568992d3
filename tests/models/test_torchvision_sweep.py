"""Every torchvision classifier family is pruned correctly or refused clearly, never left broken (issue 21).

The smallest model of each family (untrained, 10 classes, the smallest input it takes from 64x64 up) is
pruned to 50% of its MACs: the pruned model must run with 10 outputs, its counted MACs must equal the
predicted MACs, and the masked dense model must compute the same (except where a LayerNorm or GroupNorm
normalises pruned channels, which is approximate by design). A refusal must be an ``AutoPruneError`` of
one line. No wall-clock limit here (timings belong in benchmarks): ``benchmarks/torchvision_sweep.py`` runs
each model under time and memory limits, and larger variants (results in
``benchmarks/results/torchvision_sweep.md``).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from autoprune.engine.plan import apply_masks, apply_plan, channel_masks
from autoprune.engine.pruner import PruneConfig
from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
from autoprune.errors import AutoPruneError
from autoprune.metrics import count_macs
from autoprune.models.torchvision_models import build_torchvision, torchvision_names
from autoprune.pipelines.prune import compute_plan

#: The smallest model of every family, with the input size it runs at.
MODELS = {
    "alexnet": 64,
    "convnext_tiny": 64,
    "densenet121": 64,
    "efficientnet_b0": 64,
    "efficientnet_v2_s": 64,  # fused MBConv
    "googlenet": 64,
    "inception_v3": 96,  # needs 75+ pixels
    "maxvit_t": 224,  # its partitions need 224
    "mnasnet0_5": 64,
    "mobilenet_v2": 64,
    "mobilenet_v3_small": 64,
    "regnet_x_400mf": 64,
    "regnet_y_400mf": 64,
    "resnet18": 64,
    "shufflenet_v2_x0_5": 64,
    "squeezenet1_0": 64,
    "swin_t": 64,
    "swin_v2_t": 64,
    "vgg11_bn": 64,
    "vit_b_32": 224,  # the position embedding is built for 224
}


def _norm_over_channels(structure: ModelStructure) -> bool:
    modules = dict(structure.model.named_modules())
    return any(isinstance(modules.get(m.name), (nn.LayerNorm, nn.GroupNorm))
               for g in structure.groups for m in g.members)


def _family(name: str) -> str:
    family = re.match(r"[a-z]+", name).group()  # type: ignore[union-attr]
    return {"resnext": "resnet", "wide": "resnet"}.get(family, family)  # the same blocks, wider or grouped


def test_every_family_is_covered() -> None:
    families = {_family(name) for name in torchvision_names()}
    covered = {_family(name) for name in MODELS}
    assert families <= covered, sorted(families - covered)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_torchvision_model_is_pruned_or_refused(name: str, randomize_bn: Callable[[nn.Module], nn.Module]) -> None:
    torch.manual_seed(0)
    shape = (1, 3, MODELS[name], MODELS[name])
    model = randomize_bn(build_torchvision(name, num_classes=10))  # outputs that a wrong channel would change
    with torch.no_grad():  # a zero-initialised head (ViT) would make the output comparison trivial
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                nn.init.normal_(p, std=0.02)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnsupportedLayerWarning)
            structure = ModelStructure(model, shape)
            plan = compute_plan(model, shape, PruneConfig(target_macs=0.5), structure=structure)
            pruned = apply_plan(model, plan).eval()
    except AutoPruneError as exc:  # a refusal is allowed: one clear line
        assert "\n" not in str(exc) and len(str(exc)) > 40
        return
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == (2, 10)
    counted = count_macs(pruned, shape)
    assert counted == plan.meta["predicted_macs"]
    assert 0.45 <= counted / structure.dense_macs <= 0.5  # the budget, nearly filled
    if not _norm_over_channels(structure):
        masked = copy.deepcopy(model)
        apply_masks(masked, channel_masks(structure, plan))
        with torch.no_grad():
            torch.testing.assert_close(masked(x), out, atol=1e-4 * float(out.abs().max()), rtol=1e-3)
