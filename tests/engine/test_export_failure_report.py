"""A failed ONNX check still leaves the run's report (with the reason) and raises one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import autoprune.pipelines.search_report as search_report
from autoprune.engine.plan import PrunePlan
from autoprune.errors import ExportError
from autoprune.pipelines.search_report import write_export
from autoprune.report import RunReport


def test_failed_onnx_check_writes_the_report_then_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_check(model: nn.Module, shape: tuple[int, ...], path: Path) -> float:
        path.write_bytes(b"half-written")
        raise ExportError("ONNX output differs from PyTorch by 3 (allowed 1e-4 + 1e-3 x |output|); use --no-onnx")

    monkeypatch.setattr(search_report, "export_onnx", failing_check)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 1, 6, 6))
    report = RunReport("prune", "m", "digits", 0, tmp_path)
    files = write_export(tmp_path, model, PrunePlan((1, 1, 6, 6)), (1, 1, 6, 6), report, onnx=True)
    assert files == {"plan": "plan.json", "weights": "model.safetensors"}  # no onnx entry
    assert not (tmp_path / "model.onnx").exists() and (tmp_path / "model.safetensors").exists()
    with pytest.raises(ExportError, match=r"differs from PyTorch by 3.*everything else is written") as info:
        report.write()
    assert "\n" not in str(info.value)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["status"] == "onnx_check_failed" and "differs" in written["onnx_error"]
