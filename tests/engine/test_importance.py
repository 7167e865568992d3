"""Importance criteria: the shared contract on every group of real models, and hand-computed facts."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
import torchvision
from torch import nn

from autoprune.engine.importance import IMPORTANCES, Importance, get_importance, register_importance
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError, UnknownNameError

Loader = list[tuple[torch.Tensor, torch.Tensor]]
DATA_CRITERIA = ["activation_mean", "apoz", "taylor"]
ZOO: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
}


def loader_for(shape: tuple[int, ...], classes: int, batches: int = 2, seed: int = 0) -> Loader:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(shape, generator=gen), torch.randint(0, classes, (shape[0],), generator=gen))
        for _ in range(batches)
    ]


@pytest.fixture(scope="module")
def zoo() -> dict[str, tuple[nn.Module, ModelStructure, Loader]]:
    torch.manual_seed(0)
    built = {}
    for name, make in ZOO.items():
        model = make()
        built[name] = (model, ModelStructure(model, (1, 3, 32, 32)), loader_for((4, 3, 32, 32), 10))
    return built


class TinyNet(nn.Module):
    """conv1 -> bn1 -> relu -> conv2 -> relu -> mean -> fc; groups ``conv1`` (3 channels), ``conv2`` (2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 2, 1, bias=False)
        self.fc = nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(self.hidden(x))).mean(dim=(2, 3)))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn1(self.conv1(x)))


def tiny() -> tuple[TinyNet, ModelStructure]:
    """TinyNet with hand-set weights: per channel of conv1, sum |w| is 2, 0.5, 4 over conv1's filters,
    1, 3, 0.5 over bn1's gamma and 1, 2, 0.5 over conv2's input slices."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor([[1.0, 1.0], [0.5, 0.0], [2.0, -2.0]]).view(3, 2, 1, 1))
        model.bn1.weight.copy_(torch.tensor([1.0, -3.0, 0.5]))
        model.conv2.weight.copy_(torch.tensor([[0.5, 1.0, 0.0], [-0.5, 1.0, 0.5]]).view(2, 3, 1, 1))
    return model, ModelStructure(model, (1, 2, 4, 4))


TINY_LOADER = loader_for((4, 2, 4, 4), 4, batches=3)


def prepared(
    name: str, model: nn.Module, structure: ModelStructure, loader: Loader, **kwargs: int
) -> Importance:
    criterion = get_importance(name, **kwargs)
    criterion.prepare(model, structure, loader)
    return criterion


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("model_name", list(ZOO))
@pytest.mark.parametrize("criterion_name", IMPORTANCES.names())
def test_scores_contract_on_every_group(
    zoo: dict[str, tuple[nn.Module, ModelStructure, Loader]], criterion_name: str, model_name: str
) -> None:
    model, structure, loader = zoo[model_name]
    criterion = prepared(criterion_name, model, structure, loader)
    assert criterion.name == criterion_name
    assert structure.groups
    for group in structure.groups:
        scores = criterion(group)
        assert scores.shape == (group.channels,), group.name
        assert scores.dtype == torch.float32, group.name
        assert scores.device.type == "cpu", group.name
        assert torch.isfinite(scores).all(), group.name


def test_registry_holds_the_documented_criteria() -> None:
    assert set(IMPORTANCES.names()) >= {"l1", "l2", "bn_scale", "taylor", "activation_mean", "apoz", "random"}
    for name in IMPORTANCES:
        assert IMPORTANCES.get(name).needs_data == (name in DATA_CRITERIA), name


@pytest.mark.parametrize("criterion_name", DATA_CRITERIA)
def test_data_criteria_leave_the_model_unchanged(criterion_name: str) -> None:
    model, structure = tiny()
    model.train()
    model.conv1.weight.requires_grad_(False)
    before = snapshot(model)
    prepared(criterion_name, model, structure, TINY_LOADER)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key  # weights and BN running statistics
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert not model.conv1.weight.requires_grad and model.bn1.weight.requires_grad


@pytest.mark.parametrize("criterion_name", DATA_CRITERIA)
def test_data_criteria_demand_calibration_data(criterion_name: str) -> None:
    model, structure = tiny()
    criterion = get_importance(criterion_name)
    with pytest.raises(AutoPruneError, match="calibration data"):
        criterion(structure.groups[0])
    with pytest.raises(AutoPruneError, match="calibration data"):
        criterion.prepare(model, structure, None)
    with pytest.raises(AutoPruneError, match="empty calibration loader"):
        criterion.prepare(model, structure, [])


@pytest.mark.parametrize("criterion_name", ["l1", "l2", "bn_scale", "random"])
def test_criteria_without_data_ignore_the_loader(criterion_name: str) -> None:
    model, structure = tiny()
    criterion = get_importance(criterion_name)
    criterion.prepare(model, structure, None)
    assert criterion(structure.group("conv1")).shape == (3,)


# ------------------------------------------------------------------------------------- magnitudes
def test_l1_and_l2_match_a_hand_computation_over_the_whole_group() -> None:
    _, structure = tiny()
    group = structure.group("conv1")
    # mean over members (conv1 filter, bn1 gamma, conv2 input slice) of sum |w| / sum w^2
    l1 = torch.tensor([(2 + 1 + 1) / 3, (0.5 + 3 + 2) / 3, (4 + 0.5 + 0.5) / 3])
    l2 = torch.tensor([(2 + 1 + 0.5) / 3, (0.25 + 9 + 2) / 3, (8 + 0.25 + 0.25) / 3])
    torch.testing.assert_close(get_importance("l1")(group), l1)
    torch.testing.assert_close(get_importance("l2")(group), l2)
    # conv1's filters alone would rank channel 2 first; the group ranks channel 1 first
    assert get_importance("l1")(group).argsort(descending=True).tolist() == [1, 2, 0]


def _hand_group_l1(model: nn.Module, group: PrunableGroup) -> torch.Tensor:
    """Mean over the group's members of sum |w| of each channel's slice, from the member list alone."""
    modules = dict(model.named_modules())
    terms = []
    for member in group.members:
        weight = modules[member.name].weight.detach()
        if isinstance(modules[member.name], nn.BatchNorm2d):
            terms.append(weight.abs())
        elif member.kind == "out":
            terms.append(weight.abs().flatten(1).sum(1))
        else:
            terms.append(weight.abs().transpose(0, 1).flatten(1).sum(1))
    return torch.stack(terms).mean(0)


@pytest.mark.parametrize("model_name", list(ZOO))
def test_l1_matches_hand_computation_and_torch_pruning(
    zoo: dict[str, tuple[nn.Module, ModelStructure, Loader]], model_name: str
) -> None:
    model, structure, _ = zoo[model_name]
    ours = {p: get_importance(f"l{p}") for p in (1, 2)}
    bn_scale = get_importance("bn_scale")
    modules = dict(model.named_modules())
    depthwise = 0
    for group in structure.groups:
        torch.testing.assert_close(ours[1](group), _hand_group_l1(model, group), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            bn_scale(group), tp.importance.BNScaleImportance(normalizer=None)(group.tp_group)
        )
        if any(getattr(modules[m], "groups", 1) > 1 for m in group.modules()):
            depthwise += 1  # Torch-Pruning 1.6.1 leaves depthwise filters out of its group norm
            continue
        for p in (1, 2):
            reference = tp.importance.GroupMagnitudeImportance(p=p, group_reduction="mean", normalizer=None)
            torch.testing.assert_close(ours[p](group), reference(group.tp_group), rtol=1e-5, atol=1e-6)
    assert depthwise == (0 if model_name == "resnet18" else 17)


class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.g = nn.Conv2d(4, 6, 3, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.a(x)))
        return self.fc(torch.relu(self.bn2(self.g(x))).mean(dim=(2, 3)))


def test_l1_reads_a_grouped_conv_input_slice_from_its_own_block() -> None:
    torch.manual_seed(0)
    model = GroupedNet()
    group = ModelStructure(model, (1, 2, 6, 6)).group("a")
    w = model.g.weight.detach().abs()  # (6 out, 2 in per block, 3, 3); block b: outputs 3b..3b+2
    slices = torch.stack([w[3 * (c // 2) : 3 * (c // 2) + 3, c % 2].sum() for c in range(4)])
    expected = (model.a.weight.detach().abs().flatten(1).sum(1) + model.bn.weight.detach().abs() + slices) / 3
    torch.testing.assert_close(get_importance("l1")(group), expected)


def test_unstructured_magnitudes_are_per_weight() -> None:
    model, _ = tiny()
    weight = model.conv1.weight
    torch.testing.assert_close(get_importance("l1").unstructured_scores(weight, "conv1.weight"), weight.abs())
    torch.testing.assert_close(get_importance("l2").unstructured_scores(weight, "conv1.weight"), weight**2)


@pytest.mark.parametrize("criterion_name", ["bn_scale", "apoz", "activation_mean"])
def test_channel_only_criteria_refuse_unstructured(criterion_name: str) -> None:
    model, _ = tiny()
    with pytest.raises(AutoPruneError, match="use l1, l2, random, taylor"):
        get_importance(criterion_name).unstructured_scores(model.conv1.weight, "conv1.weight")


def test_bn_scale_is_abs_gamma_and_falls_back_to_l1_once() -> None:
    _, structure = tiny()
    criterion = get_importance("bn_scale")
    assert torch.equal(criterion(structure.group("conv1")), torch.tensor([1.0, 3.0, 0.5]))
    no_bn = structure.group("conv2")
    with pytest.warns(UserWarning, match=r"no BatchNorm.*l1"):
        scores = criterion(no_bn)
    torch.testing.assert_close(scores, get_importance("l1")(no_bn))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        criterion(no_bn)


class ConcatNet(nn.Module):
    """Two convs concatenated into one BN: group ``b`` owns BN channels 3 and 4 as its root channels 0, 1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 1, bias=False)
        self.b = nn.Conv2d(2, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(5)
        self.conv = nn.Conv2d(5, 4, 3, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_member_channels_map_to_root_channels() -> None:
    torch.manual_seed(0)
    model = ConcatNet().eval()
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0, -4.0, 5.0]))
        model.bn.bias[4] = -100.0
    structure = ModelStructure(model, (1, 2, 6, 6))
    group = structure.group("b")
    assert torch.equal(get_importance("bn_scale")(group), torch.tensor([4.0, 5.0]))
    loader = loader_for((4, 2, 6, 6), 3)
    mean = prepared("activation_mean", model, structure, loader)(group)
    assert mean[1] == 0 and mean[0] > 0
    assert prepared("apoz", model, structure, loader)(group)[1] == 0


# ------------------------------------------------------------------------------------ activations
def test_activation_criteria_match_a_hand_computation() -> None:
    model, structure = tiny()
    with torch.no_grad():
        model.bn1.bias.copy_(torch.tensor([0.1, 0.0, -100.0]))  # channel 2 is never positive
        hidden = torch.cat([model.hidden(x) for x, _ in TINY_LOADER])  # relu(bn1(conv1(x))), (12, 3, 4, 4)
        out2 = torch.cat([torch.relu(model.conv2(model.hidden(x))) for x, _ in TINY_LOADER])
    group = structure.group("conv1")
    mean = prepared("activation_mean", model, structure, TINY_LOADER)
    apoz = prepared("apoz", model, structure, TINY_LOADER)
    torch.testing.assert_close(mean(group), hidden.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(apoz(group), (hidden > 0).float().mean(dim=(0, 2, 3)))
    assert mean(group)[2] == 0
    assert apoz(group)[2] == 0 and apoz(group).argmin() == 2 and (apoz(group)[:2] > 0).all()
    # conv2 has no BN after it: its own output is observed
    torch.testing.assert_close(mean(structure.group("conv2")), out2.mean(dim=(0, 2, 3)))


def test_activation_criteria_use_at_most_max_batches() -> None:
    model, structure = tiny()
    with torch.no_grad():
        first = model.hidden(TINY_LOADER[0][0])
    criterion = get_importance("activation_mean")
    criterion.prepare(model, structure, TINY_LOADER, max_batches=1)
    torch.testing.assert_close(criterion(structure.group("conv1")), first.mean(dim=(0, 2, 3)))


# ----------------------------------------------------------------------------------------- taylor
def _hand_taylor(model: nn.Module) -> dict[str, torch.Tensor]:
    """sum over batches of |w * dL/dw| with plain backward() on a copy, in eval mode."""
    copy_ = copy.deepcopy(model).eval()
    total = {name: torch.zeros_like(p) for name, p in copy_.named_parameters()}
    for x, y in TINY_LOADER:
        copy_.zero_grad()
        F.cross_entropy(copy_(x), y).backward()
        for name, p in copy_.named_parameters():
            assert p.grad is not None
            total[name] += (p.detach() * p.grad).abs()
    return total


def test_taylor_matches_a_hand_computation() -> None:
    model, structure = tiny()
    expected = _hand_taylor(model)
    criterion = prepared("taylor", model, structure, TINY_LOADER)
    for name, p in model.named_parameters():
        torch.testing.assert_close(criterion.unstructured_scores(p, name), expected[name])
    # group conv2 = mean of conv2's filter and fc's input column
    conv2 = (expected["conv2.weight"].flatten(1).sum(1) + expected["fc.weight"].sum(0)) / 2
    torch.testing.assert_close(criterion(structure.group("conv2")), conv2)
    conv1 = (
        expected["conv1.weight"].flatten(1).sum(1)
        + expected["bn1.weight"]
        + expected["conv2.weight"].transpose(0, 1).flatten(1).sum(1)
    ) / 3
    torch.testing.assert_close(criterion(structure.group("conv1")), conv1)


def test_taylor_is_zero_for_a_channel_with_zero_weights() -> None:
    model, structure = tiny()
    with torch.no_grad():
        model.conv1.weight[0] = 0.0
        model.bn1.weight[0] = 0.0
        model.conv2.weight[:, 0] = 0.0
    scores = prepared("taylor", model, structure, TINY_LOADER)(structure.group("conv1"))
    assert scores[0] == 0 and (scores[1:] > 0).all()


def test_taylor_rejects_unknown_parameters() -> None:
    model, structure = tiny()
    criterion = prepared("taylor", model, structure, TINY_LOADER)
    with pytest.raises(AutoPruneError, match=r"no parameter 'nope\.weight'"):
        criterion.unstructured_scores(model.conv1.weight, "nope.weight")
    with pytest.raises(AutoPruneError, match="shape"):
        criterion.unstructured_scores(torch.zeros(1), "conv1.weight")


# ----------------------------------------------------------------------------------------- random
def test_random_is_reproducible_per_seed_and_group() -> None:
    _, structure = tiny()
    conv1, conv2 = structure.group("conv1"), structure.group("conv2")
    first = get_importance("random", seed=3)
    a1, a2 = first(conv1), first(conv2)
    second = get_importance("random", seed=3)
    assert torch.equal(second(conv2), a2) and torch.equal(second(conv1), a1)  # order does not matter
    assert not torch.equal(get_importance("random", seed=4)(conv1), a1)
    assert ((a1 >= 0) & (a1 < 1)).all()
    weight = torch.zeros(5, 4)
    assert torch.equal(first.unstructured_scores(weight, "w"), second.unstructured_scores(weight, "w"))
    assert first.unstructured_scores(weight, "w").shape == (5, 4)


# --------------------------------------------------------------------------------------- registry
def test_unknown_criterion_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_importance("l3")
    message = str(info.value)
    assert "Did you mean" in message and "'l1'" in message
    for name in IMPORTANCES:
        assert name in message


def test_bad_constructor_arguments_are_reported() -> None:
    with pytest.raises(AutoPruneError, match=r"'l1' does not accept.*seed"):
        get_importance("l1", seed=1)
    with pytest.raises(AutoPruneError, match="it takes seed"):
        get_importance("random", sed=1)


def test_register_importance_adds_a_criterion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IMPORTANCES, "_items", dict(IMPORTANCES._items))

    @register_importance("ones")
    class Ones(Importance):
        def __call__(self, group: PrunableGroup) -> torch.Tensor:
            return torch.ones(group.channels)

    _, structure = tiny()
    criterion = get_importance("ones")
    assert isinstance(criterion, Ones) and criterion.name == "ones"
    assert torch.equal(criterion(structure.group("conv1")), torch.ones(3))
    with pytest.raises(ValueError, match="already registered"):
        register_importance("ones")(Ones)
