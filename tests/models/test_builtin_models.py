"""Built-in models: shapes on 8x8 and 32x32 inputs, hand-computed parameter counts, structure."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from autoprune.models import MODELS, CifarResNet, MobileNetV2, build_model
from autoprune.models.resnet import BasicBlock

BUILTINS = ["resnet20", "resnet32", "resnet56", "vgg_small", "mobilenetv2"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k  # no bias: every conv is followed by BN


def bn(c: int) -> int:
    return 2 * c  # weight and bias (running stats are buffers)


def cifar_resnet_params(depth: int, num_classes: int = 10, in_channels: int = 3) -> int:
    """Parameters of a CIFAR ResNet with 1x1-conv+BN ("option B") shortcuts where the shape changes."""
    n = (depth - 2) // 6
    total = conv(in_channels, 16, 3) + bn(16)
    for cin, cout in [(16, 16), (16, 32), (32, 64)]:
        total += conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)
        if cin != cout:
            total += conv(cin, cout, 1) + bn(cout)
        total += (n - 1) * (2 * conv(cout, cout, 3) + 2 * bn(cout))
    return total + 64 * num_classes + num_classes


def test_registry_holds_the_builtins() -> None:
    assert MODELS.names() == sorted(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [8, 32])
def test_forward_shape(name: str, in_channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", BUILTINS)
def test_trains_on_digit_sized_inputs(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet20_has_0_27m_params() -> None:
    count = n_params(build_model("resnet20"))
    # Hand count with projection shortcuts: 272,474 (the paper's option A, without the two 1x1 conv+BN
    # shortcuts of 512 + 64 + 2048 + 128 parameters, gives 269,722: the "0.27M" of He et al.).
    assert count == cifar_resnet_params(20) == 272_474
    assert count == pytest.approx(0.27e6, rel=0.05)


@pytest.mark.parametrize(("depth", "expected"), [(20, 272_474), (32, 466_906), (56, 855_770)])
def test_resnet_param_counts(depth: int, expected: int) -> None:
    assert n_params(build_model(f"resnet{depth}")) == cifar_resnet_params(depth) == expected
    assert n_params(build_model(f"resnet{depth}", num_classes=7, in_channels=1)) == cifar_resnet_params(
        depth, 7, 1
    )


def test_vgg_small_param_count() -> None:
    channels = [3, 32, 32, 64, 64, 128, 128]
    expected = sum(conv(a, b, 3) + bn(b) for a, b in itertools.pairwise(channels))
    expected += 128 * 10 + 10
    assert n_params(build_model("vgg_small")) == expected == 288_746


def test_resnet_blocks_use_projection_shortcuts_only_where_shape_changes() -> None:
    model = build_model("resnet20")
    assert isinstance(model, CifarResNet)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 9
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert projections == [model.layer2[0], model.layer3[0]]


def test_basic_block_adds_shortcut_before_the_last_relu() -> None:
    torch.manual_seed(0)
    block = BasicBlock(16, 32, stride=2).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        inner = block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))
        expected = torch.relu(inner + block.shortcut(x))
        assert torch.equal(block(x), expected)


def test_each_relu_is_its_own_module_and_runs_once() -> None:
    model = build_model("resnet20").eval()
    calls: list[nn.Module] = []
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for relu in relus:
        relu.register_forward_hook(lambda module, inputs, output: calls.append(module))
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 8))
    assert len(relus) == 1 + 2 * 9
    assert sorted(map(id, calls)) == sorted(map(id, relus))  # each hooked ReLU ran exactly once


def test_mobilenetv2_structure() -> None:
    model = build_model("mobilenetv2")
    assert isinstance(model, MobileNetV2)
    depthwise = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    ]
    assert len(depthwise) == 17  # one per inverted residual block
    residual = [m for m in model.modules() if getattr(m, "use_residual", False)]
    assert len(residual) == 10  # blocks after the first of each stage, except the single-block stages
    assert model.classifier.in_features == 1280
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    with torch.no_grad():
        model.eval()
        assert model.features(torch.randn(1, 3, 32, 32)).shape == (1, 1280, 4, 4)
        assert model.features(torch.randn(1, 3, 8, 8)).shape == (1, 1280, 1, 1)


def test_mobilenetv2_width_mult() -> None:
    slim = MobileNetV2(width_mult=0.5)
    assert n_params(slim) < n_params(MobileNetV2())
    assert slim.classifier.in_features == 1280  # the last conv is never narrowed, as in torchvision
    assert slim(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", BUILTINS)
def test_initialization(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    big = max((m for m in model.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())
    fan_out = big.out_channels * big.kernel_size[0] * big.kernel_size[1] // big.groups
    assert big.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)  # Kaiming, fan-out


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="depth=21"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="num_classes=0"):
        build_model("resnet20", num_classes=0)
    with pytest.raises(ValueError, match="in_channels=0"):
        build_model("vgg_small", in_channels=0)
