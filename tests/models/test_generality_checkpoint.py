"""Checkpoints keep the state_dict's module versions (issue 21: torchvision's MNASNet checks them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from autoprune.models import load_checkpoint_into, save_checkpoint
from autoprune.models.checkpoint import read_checkpoint


@pytest.mark.parametrize("filename", ["m.safetensors", "m.pt"])
def test_mnasnet_checkpoint_round_trip(tmp_path: Path, filename: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.mnasnet0_5(weights=None, num_classes=10).eval()
    path = save_checkpoint(model, tmp_path / filename, {"model": "torchvision:mnasnet0_5"})
    state, meta = read_checkpoint(path)
    assert meta == {"model": "torchvision:mnasnet0_5"}  # the versions are not user metadata
    assert state._metadata[""] == {"version": 2}  # type: ignore[attr-defined]
    fresh = torchvision.models.mnasnet0_5(weights=None, num_classes=10).eval()
    load_checkpoint_into(fresh, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


def test_plain_safetensors_without_versions_load_into_mnasnet(tmp_path: Path) -> None:
    import safetensors.torch

    model = torchvision.models.mnasnet0_5(weights=None, num_classes=10).eval()
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    fresh = torchvision.models.mnasnet0_5(weights=None, num_classes=10).eval()
    load_checkpoint_into(fresh, tmp_path / "m.safetensors")  # versions taken from the model's own code
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))
