"""bf16 mixed-precision training (``--precision bf16``): the steps really run in bfloat16, evaluation stays
float32, masked weights stay exactly zero, the model comes back float32 in the standard layout, and it learns
about as well as float32 training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoprune.data import load_dataset
from autoprune.engine.pruner import PruneConfig
from autoprune.metrics import evaluate_accuracy
from autoprune.models import build_model
from autoprune.pipelines.oneshot import SpaceSampler
from autoprune.pipelines.standard import StandardConfig, run_standard
from autoprune.precision import prepare_input
from autoprune.search_spaces import auto_space
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet, SupernetConfig, train_supernet
from autoprune.training import TrainConfig, train


@pytest.fixture(scope="module")
def splits():  # type: ignore[no-untyped-def]
    return load_dataset("digits")


def _conv_dtypes(model: nn.Module) -> tuple[list[torch.dtype], torch.utils.hooks.RemovableHandle]:
    seen: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return seen, conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))


def _standard_layout_float32(model: nn.Module) -> bool:
    return all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_use_the_precision_and_evaluation_stays_float32(splits, precision: str) -> None:  # type: ignore[no-untyped-def]
    seed_everything(0)
    model = build_model("resnet20", num_classes=10, in_channels=1)
    seen, hook = _conv_dtypes(model)
    train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=1, precision=precision), progress=False)
    trained = set(seen)
    seen.clear()
    evaluate_accuracy(model, splits.val_loader())
    hook.remove()
    assert trained == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert set(seen) == {torch.float32}
    assert _standard_layout_float32(model)  # prunable (weights reshaped) and exportable as safetensors


def test_bf16_learns_about_as_well_as_fp32(splits) -> None:  # type: ignore[no-untyped-def]
    accuracy = {}
    for precision in ("fp32", "bf16"):
        seed_everything(0)
        model = build_model("resnet20", num_classes=10, in_channels=1)
        train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=4, precision=precision), progress=False)
        accuracy[precision] = evaluate_accuracy(model, splits.val_loader()).top1
    assert accuracy["fp32"] > 0.6  # it learned at all (10 classes: chance is 0.1)
    assert accuracy["bf16"] > accuracy["fp32"] - 0.1, accuracy


def test_masked_weights_stay_exactly_zero_under_bf16(splits) -> None:  # type: ignore[no-untyped-def]
    seed_everything(0)
    model = build_model("resnet20", num_classes=10, in_channels=1)
    config = StandardConfig(prune=PruneConfig(target_macs=0.5, granularity="kernel"),
                            finetune=TrainConfig(epochs=1, lr=0.01, precision="bf16"))
    result = run_standard(model, splits.input_shape(1), config, train_loader=splits.train_loader(64, seed=0),
                          val_loader=splits.val_loader(), progress=False)
    masks = result.plan.masks
    assert masks
    params = dict(result.model.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name].detach()[~mask]) == 0, name
    assert _standard_layout_float32(result.model)


def test_bf16_supernet_training_runs_in_bfloat16_and_resumes(splits, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed_everything(0)
    model = build_model("resnet20", num_classes=10, in_channels=1)
    net = Supernet(model, splits.input_shape(1))
    space = auto_space(net.structure, target=0.5, min_ratio=0.25, step=0.25)
    seen, hook = _conv_dtypes(model)
    config = SupernetConfig(epochs=1, num_random=1, precision="bf16", teacher="dense")
    ckpt = tmp_path / "supernet.pt"
    train_supernet(net, SpaceSampler(space), splits.train_loader(64, seed=0), config, checkpoint=ckpt, progress=False)
    assert set(seen) == {torch.bfloat16}
    assert _standard_layout_float32(model)
    before = copy.deepcopy(model.state_dict())
    history = train_supernet(net, SpaceSampler(space), splits.train_loader(64, seed=0),
                             SupernetConfig(epochs=2, num_random=1, precision="bf16", teacher="dense"),
                             checkpoint=ckpt, progress=False)
    hook.remove()
    assert len(history.largest_loss) == 2 and all(torch.isfinite(torch.tensor(history.largest_loss)))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_prepare_input_only_changes_the_layout_of_images() -> None:
    x = torch.randn(2, 3, 4, 4)
    y = prepare_input(x, "bf16")
    assert torch.equal(x, y) and y.is_contiguous(memory_format=torch.channels_last)
    flat = torch.randn(2, 5)
    assert prepare_input(flat, "bf16") is flat and prepare_input(x, "fp32") is x


@pytest.mark.parametrize("make", [lambda: TrainConfig(precision="fp16"), lambda: SupernetConfig(precision="half")])
def test_an_unknown_precision_is_refused_naming_the_choices(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"precision=.* must be one of fp32, bf16"):
        make()


class _ViewFlatten(nn.Module):
    """A user's model that flattens with ``.view()``: fine in fp32, impossible on channels-last activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.view(y.size(0), -1))


def test_a_model_that_flattens_with_view_gets_a_clear_error_under_bf16() -> None:
    from autoprune.errors import TrainingError

    batches = [(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))]
    train(_ViewFlatten(), batches, TrainConfig(epochs=1), progress=False)  # fp32 trains
    model = _ViewFlatten()
    with pytest.raises(TrainingError, match=r"\.view\(\).*--precision fp32"):
        train(model, batches, TrainConfig(epochs=1, precision="bf16"), progress=False)
    assert _standard_layout_float32(model)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_instructions_warns_that_it_is_emulated(monkeypatch, native: bool) -> None:  # type: ignore[no-untyped-def]
    import warnings

    from autoprune import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        precision.check_device_supports("bf16", "cpu")
        precision.check_device_supports("fp32", "cpu")  # float32 never warns
    slow = [w for w in caught if issubclass(w.category, precision.SlowPrecisionWarning)]
    if native:
        assert not slow and precision.slow_precision_message("bf16", "cpu") is None
    else:
        assert len(slow) == 1 and "use fp32" in str(slow[0].message) and "AVX512-BF16/AMX" in str(slow[0].message)
