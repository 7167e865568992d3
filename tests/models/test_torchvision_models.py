"""``torchvision:<name>`` models: untrained, any number of classes and input channels."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from autoprune.errors import UnknownNameError
from autoprune.models import build_model, model_names


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "googlenet"])
def test_grayscale_seven_classes(name: str) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. GoogLeNet's initialization FutureWarning must not leak
        model = build_model(f"torchvision:{name}", num_classes=7, in_channels=1).eval()
    assert first_conv(model).in_channels == 1
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 7)


def test_googlenet_has_no_aux_heads_in_training() -> None:
    model = build_model("torchvision:googlenet", num_classes=3).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor)  # not GoogLeNetOutputs
    assert out.shape == (2, 3)


def test_replaced_conv_keeps_its_settings() -> None:
    original = first_conv(build_model("torchvision:resnet18"))
    replaced = first_conv(build_model("torchvision:resnet18", in_channels=2))
    assert replaced.in_channels == 2
    for attr in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"):
        assert getattr(replaced, attr) == getattr(original, attr)
    assert (replaced.bias is None) == (original.bias is None)


def test_three_channels_keeps_the_original_conv() -> None:
    model = build_model("torchvision:resnet18", num_classes=4)
    assert first_conv(model).in_channels == 3
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 4


def test_unknown_torchvision_name_suggests_close_matches() -> None:
    with pytest.raises(
        UnknownNameError, match=r"unknown torchvision model 'resnet19'.*Did you mean 'resnet18'"
    ):
        build_model("torchvision:resnet19")


def test_model_names_lists_torchvision_models() -> None:
    names = model_names()
    assert names[:5] == ["mobilenetv2", "resnet20", "resnet32", "resnet56", "vgg_small"]
    assert {"torchvision:resnet18", "torchvision:googlenet", "torchvision:mobilenet_v3_small"} <= set(names)
    assert all(n.startswith("torchvision:") for n in names[5:])
