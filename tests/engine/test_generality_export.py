"""Export and deploy of models beyond the zoo (issue 21): MNASNet weights, large outputs, unfolded BatchNorm."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from autoprune.engine import DeployWarning, PruneConfig, optimize_for_inference
from autoprune.engine.export import _check_outputs, export_onnx, load_pruned, save_weights
from autoprune.errors import ExportError
from autoprune.pipelines.prune import prune


def test_mnasnet_pruned_weights_load_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    shape = (1, 3, 64, 64)
    model = torchvision.models.mnasnet0_5(weights=None, num_classes=10).eval()
    pruned, plan = prune(model, shape, PruneConfig(target_macs=0.5))
    pruned.eval()
    plan.save(tmp_path / "plan.json")
    save_weights(pruned, tmp_path / "model.safetensors")
    fresh = torchvision.models.mnasnet0_5(weights=None, num_classes=10)
    loaded = load_pruned(fresh, tmp_path / "plan.json", tmp_path / "model.safetensors").eval()
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned(x))


class _Scaled(nn.Module):
    """A small classifier whose logits are about 1e20 (as after a diverging or unnormalised head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.fc.weight.mul_(1e20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_onnx_check_is_relative_for_large_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    diff = export_onnx(_Scaled(), (1, 3, 8, 8), tmp_path / "m.onnx")
    assert diff > 1.0  # far above the absolute tolerance, tiny relative to outputs of ~1e19
    assert (tmp_path / "m.onnx").is_file()


def test_onnx_check_failures_are_one_clear_line() -> None:
    ref = np.array([[1.0, 2.0, 3.0], [1e20, -1e20, 0.0]], dtype=np.float32)
    with pytest.raises(ExportError, match=r"differs from PyTorch by .* on an output of") as info:
        _check_outputs(ref * 1.01, ref, Path("m.onnx"), atol=1e-4, rtol=1e-3)
    assert "\n" not in str(info.value)
    # within the tolerance entry by entry, but the prediction flips by more than it
    ref = np.array([[1.0, 1.0015]], dtype=np.float32)
    out = np.array([[1.001, 1.0005]], dtype=np.float32)
    with pytest.raises(ExportError, match="predicts other classes"):
        _check_outputs(out, ref, Path("m.onnx"), atol=1e-4, rtol=1e-3)
    # a tie within the tolerance is no disagreement
    tie = np.array([[0.5, 0.5]], dtype=np.float32)
    assert _check_outputs(np.array([[0.5, 0.4999999]], dtype=np.float32), tie, Path("m.onnx"), atol=1e-4,
                          rtol=1e-3) < 1e-6


class _ConcatBN(nn.Module):
    """A BatchNorm over a concatenation (DenseNet's pattern) cannot fold; the one after a conv can."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.norm = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_unfolded_batchnorm_gives_a_deploy_warning() -> None:
    model = _ConcatBN().eval()
    with torch.no_grad():
        for bn in (model.norm, model.bn):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    with pytest.warns(DeployWarning, match=r"1 of 2 BatchNorm layers .* not folded, e.g. 'norm'"):
        deploy = optimize_for_inference(model)
    kinds = [type(m) for m in deploy.modules()]
    assert kinds.count(nn.BatchNorm2d) == 1  # the foldable one was folded
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), model(x), atol=1e-5, rtol=1e-4)


def test_fully_folded_model_gives_no_warning() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeployWarning)
        optimize_for_inference(model)


@pytest.mark.slow
def test_densenet_deploy_warns_about_its_unfolded_batchnorms() -> None:
    model = torchvision.models.densenet121(weights=None, num_classes=10).eval()
    with pytest.warns(DeployWarning, match=r"62 of 121 BatchNorm layers of DenseNet are not folded"):
        deploy = optimize_for_inference(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), model(x), atol=1e-4, rtol=1e-4)
