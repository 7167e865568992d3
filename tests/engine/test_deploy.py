"""The deploy form: folding BatchNorm and going channels-last change speed, never the outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.engine import DeployWarning, PruneConfig, optimize_for_inference
from autoprune.models import build_model
from autoprune.pipelines.prune import prune


def _trained_like(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so a wrong fold would show."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize("pruned", [False, True])
def test_same_outputs_no_batchnorm_and_channels_last(pruned: bool) -> None:
    model = _trained_like(build_model("resnet20", num_classes=10, in_channels=3))
    if pruned:
        model, _ = prune(model, (1, 3, 32, 32), PruneConfig(target_macs=0.5, criterion="l1"))
        model.eval()
    x = torch.randn(4, 3, 32, 32)
    deploy = optimize_for_inference(model)
    with torch.no_grad():
        expected = model(x)
        got = deploy(x)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    convs = [m for m in deploy.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert model.training is False and deploy.training is False


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


def test_untraceable_model_keeps_batchnorm_with_a_warning() -> None:
    model = _Branchy().eval()
    with pytest.warns(DeployWarning, match="BatchNorm not folded"):
        deploy = optimize_for_inference(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(deploy(x), model(x), atol=1e-5)
    assert deploy.conv.weight.is_contiguous(memory_format=torch.channels_last)
