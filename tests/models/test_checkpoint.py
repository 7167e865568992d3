"""Saving and safely loading weights: round trips, refused pickles, corrupt files, mismatches."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

from autoprune.errors import CheckpointError
from autoprune.models import build_model, load_checkpoint_into, load_weights_file, save_checkpoint
from autoprune.models.checkpoint import STATE_METADATA_KEY


def trained_like(
    name: str = "resnet20", seed: int = 0, num_classes: int = 10, in_channels: int = 3
) -> nn.Module:
    """A model with random weights *and* non-default BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(name, num_classes=num_classes, in_channels=in_channels)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(module.weight)
    return model.eval()


def outputs(model: nn.Module, in_channels: int = 1) -> torch.Tensor:
    torch.manual_seed(123)
    with torch.no_grad():
        return model(torch.randn(3, in_channels, 8, 8))


@pytest.mark.parametrize("filename", ["sub/dir/ckpt.pt", "sub/dir/ckpt.safetensors"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, filename: str) -> None:
    model = trained_like(num_classes=7, in_channels=1)
    meta = {"model": "resnet20", "accuracy": 0.5, "plan": {"ratios": [0.5, 1.0]}, "data": tmp_path}
    written = save_checkpoint(model, tmp_path / filename, meta)
    assert written == tmp_path / filename and written.is_file()
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]  # no temp file left

    fresh = trained_like(seed=1, num_classes=7, in_channels=1)
    assert not torch.equal(outputs(fresh), outputs(model))
    loaded_meta = load_checkpoint_into(fresh, written)
    assert torch.equal(outputs(fresh), outputs(model))
    assert loaded_meta == {**meta, "data": str(tmp_path)}  # non-JSON values are stored as str

    rebuilt = build_model("resnet20", num_classes=7, in_channels=1, weights=written).eval()
    assert torch.equal(outputs(rebuilt), outputs(model))


def test_safetensors_file_is_plain_safetensors(tmp_path: Path) -> None:
    model = trained_like()
    path = save_checkpoint(model, tmp_path / "w.safetensors", {"epochs": 3})
    state = safetensors.torch.load_file(str(path))
    assert state.keys() == model.state_dict().keys()
    with safetensors.safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    versions = json.loads(metadata.pop(STATE_METADATA_KEY))  # module versions, as torch's state_dict has them
    assert metadata == {"epochs": "3", "format": "pt"}
    assert versions == dict(model.state_dict()._metadata)  # type: ignore[attr-defined]
    assert load_checkpoint_into(trained_like(seed=2), path) == {"epochs": 3}


def test_safetensors_handles_tied_weights(tmp_path: Path) -> None:
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight  # shared storage, which safetensors refuses as is
    path = save_checkpoint(nn.Sequential(first, second), tmp_path / "tied.safetensors")
    assert torch.equal(load_weights_file(path)["1.weight"], first.weight.detach())


def test_plain_state_dicts_from_other_tools(tmp_path: Path) -> None:
    model = trained_like()
    expected = outputs(model, 3)
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    safetensors.torch.save_file(model.state_dict(), str(tmp_path / "plain.safetensors"))
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}  # as saved from DataParallel
    torch.save({"model_state_dict": wrapped, "epoch": 9}, tmp_path / "wrapped.pt")
    for name in ("plain.pth", "plain.safetensors", "wrapped.pt"):
        fresh = trained_like(seed=3)
        assert load_checkpoint_into(fresh, tmp_path / name) == {}
        assert torch.equal(outputs(fresh, 3), expected)


def test_save_replaces_existing_file_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(trained_like(), tmp_path / "ckpt.pt", {"version": 1})
    before = path.read_bytes()

    def crash(obj: Any, f: str | os.PathLike[str]) -> None:
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(trained_like(seed=1), path, {"version": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


class OpenPayload:
    """Unpickling this creates ``marker`` (through ``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


class SystemPayload(OpenPayload):
    """Unpickling this runs a shell command that creates ``marker``."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # type: ignore[override]
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload_class", [OpenPayload, SystemPayload])
def test_payload_is_real(tmp_path: Path, payload_class: type) -> None:
    """Control: loading the payload the unsafe way creates the marker, so the tests below mean something."""
    marker = tmp_path / "CONTROL"
    torch.save(payload_class(marker), tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)  # unsafe on purpose
    assert marker.exists()


@pytest.mark.parametrize("payload_class", [OpenPayload, SystemPayload])
@pytest.mark.parametrize("wrap", [False, True])
def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, payload_class: type, wrap: bool) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    payload = payload_class(marker)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": payload} if wrap else payload, path)
    with pytest.raises(CheckpointError) as info:
        load_weights_file(path)
    message = str(info.value)
    assert "refused to unpickle" in message
    assert str(path) in message
    assert "torch.save(model.state_dict(), path)" in message
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_checkpoint_into(nn.Linear(2, 2), path)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.0, 10])
def test_truncated_file(tmp_path: Path, suffix: str, keep: float) -> None:
    full = save_checkpoint(trained_like(), tmp_path / f"full{suffix}").read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(full[: int(len(full) * keep)] if keep <= 1 else full[: int(keep)])
    reason = "is empty" if keep == 0 else "truncated, corrupt or not a checkpoint"
    with pytest.raises(CheckpointError, match=reason) as info:
        load_weights_file(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt' does not exist"):
        load_weights_file(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_weights_file(tmp_path)


def test_objects_that_are_not_state_dicts(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        load_weights_file(tmp_path / "list.pt")
    torch.save({"epoch": 3}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="entry 'epoch' holds a int, not a tensor"):
        load_weights_file(tmp_path / "dict.pt")


def test_wrong_architecture_names_keys_and_suggests_model(tmp_path: Path) -> None:
    path = save_checkpoint(trained_like("resnet20"), tmp_path / "r20.pt")
    with pytest.raises(CheckpointError) as info:
        build_model("resnet32", weights=path)
    message = str(info.value)
    assert str(path) in message
    assert "keys missing from the checkpoint (layer1.3.conv1.weight" in message
    assert "match --model resnet20" in message


def test_wrong_number_of_classes_names_the_shapes(tmp_path: Path) -> None:
    path = save_checkpoint(trained_like("resnet20", num_classes=10), tmp_path / "c10.pt")
    with pytest.raises(CheckpointError) as info:
        build_model("resnet20", num_classes=7, weights=path)
    message = str(info.value)
    assert "fc.weight: checkpoint (10, 64) vs model (7, 64)" in message
    assert "same number of classes" in message


def test_meta_model_is_suggested(tmp_path: Path) -> None:
    meta = {"model": "vgg_small", "dataset": "digits"}
    path = save_checkpoint(trained_like("vgg_small"), tmp_path / "v.pt", meta)
    with pytest.raises(CheckpointError, match="saved from --model vgg_small on --dataset digits"):
        build_model("resnet20", weights=path)


def test_non_strict_skips_extra_keys_but_not_shapes(tmp_path: Path) -> None:
    model = trained_like()
    state = {**model.state_dict(), "extra.weight": torch.zeros(3)}
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"1 unexpected keys in the checkpoint \(extra\.weight\)"):
        load_checkpoint_into(trained_like(seed=1), tmp_path / "extra.pt")
    fresh = trained_like(seed=1)
    load_checkpoint_into(fresh, tmp_path / "extra.pt", strict=False)
    assert torch.equal(outputs(fresh, 3), outputs(model, 3))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint_into(trained_like(num_classes=5), tmp_path / "extra.pt", strict=False)
    with pytest.raises(CheckpointError, match="does not fit"):  # nothing in common
        load_checkpoint_into(nn.Linear(2, 2), tmp_path / "extra.pt", strict=False)
